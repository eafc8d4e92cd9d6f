"""Benchmark: a Deployment scaled from 0 to N pods, all created and bound, against the
same writes made directly.

Starts a fresh kubesvc API server on loopback with 10 Ready nodes and `kubesvc
controllers --controllers deployments,replicasets,scheduler`, creates a Deployment
of N replicas and times until N pods exist with a nodeName. Anchor, measured in the
same run: this script itself creating N pods and binding each (POST pods, POST
pods/binding) with the same concurrency the ReplicaSet controller uses at most
(slow-start batches up to 32 at once) — the API work with no controller logic. The
ratio is what the controllers add around the same writes.

    python3 bench/controllers_scale.py [--replicas 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.lib.cluster import APIServer  # noqa: E402


async def req(session, url, method, path, body=None, ctype="application/json"):
    async with session.request(method, url + path, data=json.dumps(body) if body is not None else None,
                               headers={"Content-Type": ctype}) as r:
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {await r.text()}")
        return await r.json()


async def setup_nodes(session, url, n=10):
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for i in range(n):
        await req(session, url, "POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                                           "metadata": {"name": f"node{i}"}})
        await req(session, url, "PATCH", f"/api/v1/nodes/node{i}/status", {"status": {"conditions": [
            {"type": "Ready", "status": "True", "lastHeartbeatTime": now, "lastTransitionTime": now}]}},
            "application/merge-patch+json")


async def controllers_round(session, url, ns, replicas):
    """Create the Deployment; follow its pods on a watch (polling lists would load the
    server the anchor does not have to carry)."""
    await req(session, url, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                            "metadata": {"name": ns}})
    rv = (await req(session, url, "GET", f"/api/v1/namespaces/{ns}/pods"))["metadata"]["resourceVersion"]
    created, bound = set(), set()
    marks = {}
    done = asyncio.Event()

    async def follow():
        async with session.get(f"{url}/api/v1/namespaces/{ns}/pods?watch=true&resourceVersion={rv}",
                               timeout=aiohttp.ClientTimeout(total=None)) as r:
            async for line in r.content:
                if not line.strip():
                    continue
                obj = json.loads(line)["object"]
                name = obj["metadata"]["name"]
                created.add(name)
                if obj["spec"].get("nodeName"):
                    bound.add(name)
                if len(created) >= replicas and "created" not in marks:
                    marks["created"] = time.monotonic()
                if len(bound) >= replicas:
                    done.set()
                    return

    watcher = asyncio.create_task(follow())
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    await req(session, url, "POST", f"/apis/apps/v1/namespaces/{ns}/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "app"}},
                 "template": {"metadata": {"labels": {"app": "app"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    await asyncio.wait_for(done.wait(), 300)
    took = time.monotonic() - t0
    watcher.cancel()
    print(f"  controllers: all pods created after {marks['created'] - t0:.2f}s, all bound after {took:.2f}s")
    return took


async def direct_round(session, url, ns, replicas):
    await req(session, url, "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                            "metadata": {"name": ns}})
    t0 = time.monotonic()

    async def one(i):
        name = f"app-{i}"
        await req(session, url, "POST", f"/api/v1/namespaces/{ns}/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "app"}},
            # another scheduler's pods: ours leaves them to this script
            "spec": {"schedulerName": "bench-direct", "containers": [{"name": "c", "image": "nginx"}]}})
        await req(session, url, "POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", {
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": f"node{i % 10}"}})

    done, batch = 0, 1
    while done < replicas:
        size = min(batch, replicas - done, 32)
        await asyncio.gather(*(one(done + k) for k in range(size)))
        done += size
        batch *= 2
    return time.monotonic() - t0


async def main_async(args):
    tmp = Path(tempfile.mkdtemp(prefix="bench-controllers-scale-"))
    server = APIServer(tmp / "apiserver").start()
    ctl = None
    try:
        async with aiohttp.ClientSession() as session:
            await setup_nodes(session, server.url)
            ctl = subprocess.Popen([sys.executable, "-m", "kubesvc.cli", "controllers", "--server", server.url,
                                    "--controllers", "deployments,replicasets,scheduler"],
                                   stdout=open(tmp / "controllers.log", "wb"), stderr=subprocess.STDOUT)
            while b"running" not in (tmp / "controllers.log").read_bytes():
                await asyncio.sleep(0.1)
            ctl_times, direct_times = [], []
            for r in range(args.rounds):  # alternate so load swings hit both
                direct_times.append(await direct_round(session, server.url, f"direct-{r}", args.replicas))
                ctl_times.append(await controllers_round(session, server.url, f"ctl-{r}", args.replicas))
                print(f"round {r + 1}: controllers {ctl_times[-1]:.2f}s  direct {direct_times[-1]:.2f}s")
            cpu = Path(f"/proc/{ctl.pid}/stat").read_text().split()
            ticks = int(cpu[13]) + int(cpu[14])
            print(f"controllers process CPU over the whole run: {ticks / 100:.1f}s")
            c, d = statistics.median(ctl_times), statistics.median(direct_times)
            print(f"Deployment 0 -> {args.replicas} pods created and bound: median {c:.2f}s "
                  f"({args.replicas / c:.0f} pods/s)")
            print(f"anchor: the same creates + bindings made directly: median {d:.2f}s ({args.replicas / d:.0f} pods/s)")
            print(f"ratio controllers / direct: {c / d:.2f}x")
    finally:
        if ctl is not None:
            ctl.terminate()
            ctl.wait(10)
        server.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicas", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
