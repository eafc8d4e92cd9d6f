"""API server benchmarks: list and watch throughput for 10,000 pods, and create
latency (p50/p99) under 8 concurrent writers.

Anchors, measured in the same run on the same disk:
  - raw SQLite: one durable (WAL, synchronous=FULL) single-row commit per insert,
    one writer — what a create costs at the bottom of the stack;
  - raw orjson: decoding the same 10,000 pods from bytes — what a list costs at least.

Usage: python3 bench/apiserver_throughput.py [--pods 10000] [--writers 8] [--creates 2000]
Prints figures and ratios; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.lib.cluster import APIServer  # noqa: E402


def pod(name: str, i: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": f"app-{i % 50}", "bench": "yes"}},
            "spec": {"nodeName": f"node-{i % 10}",
                     "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9",
                                     "ports": [{"containerPort": 8080}]}]}}


async def fill(session: aiohttp.ClientSession, url: str, n: int, prefix: str, conc: int = 16) -> None:
    q: asyncio.Queue = asyncio.Queue()
    for i in range(n):
        q.put_nowait(i)

    async def worker():
        while not q.empty():
            i = q.get_nowait()
            async with session.post(f"{url}/api/v1/namespaces/default/pods",
                                    data=orjson.dumps(pod(f"{prefix}-{i}", i)),
                                    headers={"Content-Type": "application/json"}) as r:
                if r.status != 201:
                    raise RuntimeError(await r.text())
                await r.read()
    await asyncio.gather(*(worker() for _ in range(conc)))


async def time_list(session, url: str, reps: int = 5) -> tuple[float, int, bytes]:
    times = []
    body = b""
    n = 0
    for _ in range(reps):
        t = time.perf_counter()
        async with session.get(f"{url}/api/v1/pods") as r:
            body = await r.read()
        n = len(orjson.loads(body)["items"])
        times.append(time.perf_counter() - t)
    return statistics.median(times), n, body


async def time_watch_initial(session, url: str, expect: int, reps: int = 3) -> tuple[float, int]:
    """Time until a watch from rv=0 has delivered its synthetic ADDED events for every pod."""
    times = []
    n = 0
    for _ in range(reps):
        t = time.perf_counter()
        n = 0
        async with session.get(f"{url}/api/v1/pods?watch=true&resourceVersion=0&timeoutSeconds=30") as r:
            async for line in r.content:
                if line.strip():
                    n += 1
                    if n >= expect:
                        break
        times.append(time.perf_counter() - t)
    return statistics.median(times), n


async def time_watch_live(session, url: str, n: int, watchers: int = 4) -> float:
    """n creates by 16 writers while `watchers` clients watch: events/s delivered to each."""
    async with session.get(f"{url}/api/v1/pods?limit=1") as r:
        rv = (await r.json())["metadata"]["resourceVersion"]
    got = [0] * watchers

    async def watch(k):
        async with session.get(f"{url}/api/v1/pods?watch=true&resourceVersion={rv}&timeoutSeconds=600") as r:
            async for line in r.content:
                if line.strip():
                    got[k] += 1
                    if got[k] >= n:
                        return
    tasks = [asyncio.create_task(watch(k)) for k in range(watchers)]
    await asyncio.sleep(0.3)
    t = time.perf_counter()
    await fill(session, url, n, "live")
    await asyncio.wait_for(asyncio.gather(*tasks), 300)
    return time.perf_counter() - t


async def create_latency(session, url: str, writers: int, total: int) -> list[float]:
    lat: list[float] = []
    per = total // writers

    async def writer(w):
        for i in range(per):
            body = orjson.dumps(pod(f"lat-{w}-{i}", i))
            t = time.perf_counter()
            async with session.post(f"{url}/api/v1/namespaces/default/pods", data=body,
                                    headers={"Content-Type": "application/json"}) as r:
                await r.read()
                if r.status != 201:
                    raise RuntimeError(await r.text())
            lat.append(time.perf_counter() - t)
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return lat


def sqlite_anchor(path: str, n: int = 500) -> float:
    """Durable single-row commits per second (WAL, synchronous=FULL)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB)")
    blob = orjson.dumps(pod("x", 1))
    t = time.perf_counter()
    for i in range(n):
        conn.execute("INSERT INTO kv VALUES (?, ?)", (f"k{i}", blob))
    el = time.perf_counter() - t
    conn.close()
    return n / el


def _rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=10000)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--creates", type=int, default=2000)
    ap.add_argument("--live", type=int, default=2000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-bench-"))
    anchor_rate = sqlite_anchor(str(tmp / "anchor.db"))
    api = APIServer(tmp / "api", extra_args=("--watch-history", str(max(20000, args.pods * 2)))).start()
    try:
        conn = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=conn) as s:
            t = time.perf_counter()
            await fill(s, api.url, args.pods, "p")
            fill_el = time.perf_counter() - t
            print(f"setup: {args.pods} pods created in {fill_el:.1f}s ({args.pods / fill_el:.0f} creates/s, "
                  f"16 clients)")
            lt, n, body = await time_list(s, api.url)
            t = time.perf_counter()
            for _ in range(5):
                orjson.loads(body)
            decode = (time.perf_counter() - t) / 5
            print(f"list:  {n} pods in {lt * 1000:.0f} ms (median of 5) = {n / lt:,.0f} objects/s; "
                  f"anchor orjson.loads of the same body {n / decode:,.0f} objects/s; ratio {decode / lt:.2f}")
            wt, wn = await time_watch_initial(s, api.url, n)
            print(f"watch (initial events, rv=0): {wn} events in {wt * 1000:.0f} ms (median of 3) = "
                  f"{wn / wt:,.0f} objects/s; ratio to the list {lt / wt:.2f}")
            live = await time_watch_live(s, api.url, args.live)
            print(f"watch (live): {args.live} creates delivered to 4 watchers in {live:.2f}s = "
                  f"{args.live / live:,.0f} events/s per watcher ({4 * args.live / live:,.0f} total)")
            lat = await create_latency(s, api.url, args.writers, args.creates)
            p50, p99 = pct(lat, 50) * 1000, pct(lat, 99) * 1000
            rate = len(lat) / sum(lat) * args.writers
            print(f"create under {args.writers} concurrent writers: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                  f"~{rate:,.0f} creates/s")
            print(f"anchor raw sqlite durable commits: {anchor_rate:,.0f} inserts/s "
                  f"({1000 / anchor_rate:.2f} ms each); creates/s vs anchor ratio {rate / anchor_rate:.2f}")
        rss = _rss_mb(api.proc.pid)
        print(f"API server resident memory with {args.pods + args.live + args.creates} pods: {rss:.0f} MB")
        # Restart with everything stored (~14,000 pods and as many revisions of history).
        t = time.perf_counter()
        api.restart()
        restart = time.perf_counter() - t
        t = time.perf_counter()
        import subprocess
        subprocess.run([sys.executable, "-c", "import kubesvc.apiserver.app"], check=True)
        imp = time.perf_counter() - t
        print(f"restart to /readyz with {args.pods + args.live + args.creates} pods stored: {restart:.2f}s; "
              f"anchor: importing the server's modules in a fresh interpreter {imp:.2f}s; "
              f"ratio {restart / imp:.1f}")
    finally:
        api.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
