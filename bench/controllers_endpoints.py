"""Benchmark: pod Ready change -> EndpointSlice update latency at scale, and controller memory.

Builds 1,000 services and 10,000 pods (10 per service, all Running with an IP) in a
fresh kubesvc API server on loopback, starts `kubesvc controllers --controllers
endpoints,endpointslices`, waits for every service's slice, then flips the Ready
condition of random pods (as a kubelet would) and times, for each flip, the
EndpointSlice watch event that carries it.

Anchor, measured in the same run: the API server's own write -> watch-event latency
(the same pod status patch, timed to the pods watch event). The ratio says what the
controller adds on top of the two hops it cannot avoid (pod event in, slice write out).

    python3 bench/controllers_endpoints.py [--services 1000] [--pods-per-service 10] [--samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.lib.cluster import APIServer  # noqa: E402

NS = "bench"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pod_status(ip: str, ready: bool) -> dict:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now}]}}


class Bench:
    def __init__(self, url: str, services: int, per: int):
        self.url, self.services, self.per = url, services, per
        self.session: aiohttp.ClientSession | None = None
        self.state: dict[int, bool] = {}

    async def req(self, method: str, path: str, body=None, ctype="application/json"):
        async with self.session.request(method, self.url + path, data=json.dumps(body) if body is not None else None,
                                        headers={"Content-Type": ctype}) as r:
            if r.status >= 300:
                raise RuntimeError(f"{method} {path}: {r.status} {await r.text()}")
            return await r.json()

    async def populate(self) -> float:
        t0 = time.monotonic()
        await self.req("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": NS}})
        sem = asyncio.Semaphore(16)

        async def one(coro):
            async with sem:
                await coro

        await asyncio.gather(*(one(self.req("POST", f"/api/v1/namespaces/{NS}/services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i}"},
            "spec": {"selector": {"app": f"svc-{i}"}, "ports": [{"port": 80, "targetPort": 8080}]}}))
            for i in range(self.services)))

        async def pod(i: int, j: int):
            n = i * self.per + j
            name = f"svc-{i}-pod-{j}"
            await self.req("POST", f"/api/v1/namespaces/{NS}/pods", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": f"svc-{i}"}},
                "spec": {"nodeName": f"node{n % 10}", "containers": [{"name": "c", "image": "x"}]}})
            await self.req("PATCH", f"/api/v1/namespaces/{NS}/pods/{name}/status",
                           pod_status(self.ip(n), True), "application/merge-patch+json")

        await asyncio.gather(*(one(pod(i, j)) for i in range(self.services) for j in range(self.per)))
        return time.monotonic() - t0

    def ip(self, n: int) -> str:
        return f"10.{244 + n // 65536}.{(n // 256) % 256}.{n % 256}"

    async def watch(self, path: str, rv: str, on_event) -> None:
        async with self.session.get(f"{self.url}{path}?watch=true&resourceVersion={rv}&allowWatchBookmarks=false",
                                    timeout=aiohttp.ClientTimeout(total=None)) as r:
            async for line in r.content:
                if line.strip():
                    on_event(json.loads(line), time.monotonic())

    async def count_slices(self) -> int:
        lst = await self.req("GET", f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices")
        return sum(1 for s in lst["items"] if len(s.get("endpoints") or []) == self.per)

    async def flips(self, samples: int, path: str, matcher) -> list[float]:
        """Flip Ready on random pods; time each until `matcher` sees it on the watch of `path`."""
        lst = await self.req("GET", f"{path}?limit=1")
        rv = lst["metadata"]["resourceVersion"]
        waiting: dict[tuple[str, bool], tuple[float, asyncio.Future]] = {}

        def on_event(ev, t):
            for key in matcher(ev):
                w = waiting.pop(key, None)
                if w and not w[1].done():
                    w[1].set_result(t - w[0])

        task = asyncio.create_task(self.watch(path, rv, on_event))
        await asyncio.sleep(0.2)
        state = self.state  # what each pod is now, across runs
        out = []
        rng = random.Random(samples + len(state))
        for _ in range(samples):
            n = rng.randrange(self.services * self.per)
            ready = not state.get(n, True)
            state[n] = ready
            i, j = divmod(n, self.per)
            name = f"svc-{i}-pod-{j}"
            fut = asyncio.get_running_loop().create_future()
            waiting[(name, ready)] = (time.monotonic(), fut)
            await self.req("PATCH", f"/api/v1/namespaces/{NS}/pods/{name}/status",
                           pod_status(self.ip(n), ready), "application/merge-patch+json")
            out.append(await asyncio.wait_for(fut, 30))
            await asyncio.sleep(0.01)
        task.cancel()
        return out


def pod_matcher(ev):
    obj = ev["object"]
    ready = any(c["type"] == "Ready" and c["status"] == "True"
                for c in obj.get("status", {}).get("conditions", []))
    return [(obj["metadata"]["name"], ready)]


def slice_matcher(ev):
    return [((e.get("targetRef") or {}).get("name"), bool(e.get("conditions", {}).get("ready")))
            for e in ev["object"].get("endpoints") or []]


async def main_async(args) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-controllers-"))
    server = APIServer(tmp / "apiserver").start()
    ctl = None
    try:
        async with aiohttp.ClientSession() as session:
            b = Bench(server.url, args.services, args.pods_per_service)
            b.session = session
            took = await b.populate()
            print(f"populated {args.services} services, {args.services * args.pods_per_service} pods in {took:.1f}s")
            log = open(tmp / "controllers.log", "wb")
            t0 = time.monotonic()
            ctl = subprocess.Popen([sys.executable, "-m", "kubesvc.cli", "controllers", "--server", server.url,
                                    "--controllers", "endpoints,endpointslices"], stdout=log, stderr=subprocess.STDOUT)
            while await b.count_slices() < args.services:
                if ctl.poll() is not None:
                    raise RuntimeError((tmp / "controllers.log").read_text()[-2000:])
                await asyncio.sleep(0.5)
            print(f"controllers: all {args.services} services' slices written {time.monotonic() - t0:.1f}s after start")
            await asyncio.sleep(1.0)
            rss_idle = rss_mib(ctl.pid)
            anchor = await b.flips(args.samples, f"/api/v1/namespaces/{NS}/pods", pod_matcher)
            lat = await b.flips(args.samples, f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices",
                                slice_matcher)
            rss = rss_mib(ctl.pid)
            ms = lambda xs, p: pct(xs, p) * 1000  # noqa: E731
            print(f"anchor  apiserver write -> watch event : p50 {ms(anchor, 50):7.2f} ms  p99 {ms(anchor, 99):7.2f} ms")
            print(f"pod Ready change -> EndpointSlice    : p50 {ms(lat, 50):7.2f} ms  p99 {ms(lat, 99):7.2f} ms")
            print(f"ratio (slice / anchor)               : p50 {pct(lat, 50) / pct(anchor, 50):5.1f}x  "
                  f"p99 {pct(lat, 99) / pct(anchor, 99):5.1f}x")
            print(f"controller RSS: {rss_idle:.0f} MiB after sync, {rss:.0f} MiB after the flips "
                  f"({args.services} services, {args.services * args.pods_per_service} pods)")
    finally:
        if ctl is not None:
            ctl.terminate()
            ctl.wait(10)
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--pods-per-service", type=int, default=10)
    ap.add_argument("--samples", type=int, default=200)
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
