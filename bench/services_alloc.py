"""Service allocation throughput and the start-up repair pass, at 10,000 services.

Starts a real `kubesvc apiserver`, creates N Services (each allocating a random
ClusterIP and NodePort... NodePorts only for the first 2,000: the default range has
2,768) through the HTTP API with C concurrent clients, then N ConfigMaps the same way
as the anchor (same write path, no allocation), and prints creates/s for both and
their ratio. Then it times ServiceAdmission.repair over the N stored services, and a
full server restart (which runs the repair).

    python3 bench/services_alloc.py [--count 10000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubesvc.apiserver.services import ServiceAdmission  # noqa: E402
from tests.lib.cluster import APIServer  # noqa: E402

NODE_PORTS = 2000


def service(i: int) -> dict:
    spec: dict = {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": f"a{i}"}}
    if i < NODE_PORTS:
        spec["type"] = "NodePort"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i}"}, "spec": spec}


def configmap(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}"}, "data": {"k": "v"}}


async def create_all(url: str, plural: str, make, count: int, concurrency: int) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    async with aiohttp.ClientSession() as session:
        async def worker():
            while not queue.empty():
                i = queue.get_nowait()
                async with session.post(f"{url}/api/v1/namespaces/default/{plural}",
                                        data=orjson.dumps(make(i)),
                                        headers={"Content-Type": "application/json"}) as r:
                    if r.status != 201:
                        raise RuntimeError(f"{plural} {i}: {r.status} {await r.text()}")
                    await r.read()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t0


async def list_services(url: str) -> list[dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/api/v1/services") as r:
            return orjson.loads(await r.read())["items"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        api = APIServer(Path(d) / "api").start()
        try:
            svc_s = asyncio.run(create_all(api.url, "services", service, args.count, args.concurrency))
            cm_s = asyncio.run(create_all(api.url, "configmaps", configmap, args.count, args.concurrency))
            items = asyncio.run(list_services(api.url))
            runs = []
            for _ in range(5):
                adm = ServiceAdmission()
                t0 = time.perf_counter()
                problems = adm.repair(items)
                runs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            api.stop()
            api.start(timeout=120)
            restart_s = time.perf_counter() - t0
        finally:
            api.stop()
    svc_rate, cm_rate = args.count / svc_s, args.count / cm_s
    print(f"services created:        {args.count} ({min(args.count, NODE_PORTS)} NodePort) "
          f"in {svc_s:.2f}s = {svc_rate:.0f}/s")
    print(f"configmaps created:      {args.count} in {cm_s:.2f}s = {cm_rate:.0f}/s (anchor)")
    print(f"ratio services/configmaps: {svc_rate / cm_rate:.2f}")
    print(f"repair pass over {len(items)} services: median {statistics.median(runs) * 1000:.1f} ms "
          f"(5 runs), problems: {len(problems)}")
    print(f"server restart to /readyz with {len(items)} services + {args.count} configmaps: {restart_s:.2f}s")


if __name__ == "__main__":
    main()
