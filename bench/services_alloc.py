"""Service allocation throughput and the start-up repair pass, at 10,000 services.

Each round starts a fresh `kubesvc apiserver` and creates N Services through the HTTP
API with C concurrent clients (each gets a random ClusterIP; the first 2,000 are
NodePort and also get a random node port, since the default range holds only 2,768),
and N ConfigMaps the same way as the anchor (same write path, nothing to allocate).
It prints creates/s for both and their ratio, the in-process cost of the service
write path's own work (defaults, validation, admission), the time of
ServiceAdmission.repair over the N stored services, and of a server restart (which
runs the repair). Figures are medians over the rounds.

    python3 bench/services_alloc.py [--count 10000] [--concurrency 16] [--rounds 3]
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


async def create_range(session: aiohttp.ClientSession, url: str, plural: str, make, lo: int, hi: int,
                       concurrency: int) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(lo, hi):
        queue.put_nowait(i)

    async def worker():
        while not queue.empty():
            i = queue.get_nowait()
            async with session.post(f"{url}/api/v1/namespaces/default/{plural}", data=orjson.dumps(make(i)),
                                    headers={"Content-Type": "application/json"}) as r:
                if r.status != 201:
                    raise RuntimeError(f"{plural} {i}: {r.status} {await r.text()}")
                await r.read()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0


async def create_interleaved(url: str, count: int, concurrency: int, batches: int = 20) -> tuple[list, list]:
    """Services and ConfigMaps in alternating batches, so load bursts on the shared machine hit both."""
    svc_t, cm_t = [], []
    step = count // batches
    async with aiohttp.ClientSession() as session:
        for b in range(batches):
            lo, hi = b * step, (b + 1) * step if b < batches - 1 else count
            pair = [("services", service, svc_t), ("configmaps", configmap, cm_t)]
            for plural, make, out in (pair if b % 2 == 0 else pair[::-1]):
                out.append((hi - lo) / await create_range(session, url, plural, make, lo, hi, concurrency))
    return svc_t, cm_t


async def list_services(url: str) -> list[dict]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/api/v1/services") as r:
            return orjson.loads(await r.read())["items"]


def one_round(count: int, concurrency: int) -> dict:
    """A fresh server: N service and N configmap creates in alternating batches, the repair pass, a restart."""
    with tempfile.TemporaryDirectory() as d:
        api = APIServer(Path(d) / "api").start()
        try:
            svc_rates, cm_rates = asyncio.run(create_interleaved(api.url, count, concurrency))
            items = asyncio.run(list_services(api.url))
            repair = []
            for _ in range(5):
                adm = ServiceAdmission()
                t0 = time.perf_counter()
                problems = adm.repair(items)
                repair.append(time.perf_counter() - t0)
            api.stop()
            t0 = time.perf_counter()
            api.start(timeout=120)
            restart = time.perf_counter() - t0
        finally:
            api.stop()
    return {"svc": statistics.median(svc_rates), "cm": statistics.median(cm_rates),
            "ratio": statistics.median(a / b for a, b in zip(svc_rates, cm_rates)),
            "repair": statistics.median(repair), "restart": restart, "items": len(items), "problems": len(problems)}


def in_process(count: int) -> float:
    """Seconds per service for the Service strategy and admission alone (no HTTP, no store)."""
    from kubesvc.objects.service import ServiceStrategy

    strategy, adm = ServiceStrategy(), ServiceAdmission()

    async def run() -> float:
        t0 = time.perf_counter()
        for i in range(count):
            obj = service(i)
            obj["metadata"]["namespace"] = "default"
            strategy.prepare_for_create(obj)
            strategy.default(obj)
            if strategy.validate(obj):
                raise RuntimeError("invalid")
            finish = await adm.admit("CREATE", obj, None)
            finish(True)
        return (time.perf_counter() - t0) / count

    return asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rounds = [one_round(args.count, args.concurrency) for _ in range(args.rounds)]
    per_svc = statistics.median(in_process(args.count) for _ in range(args.rounds))

    def med(k: str) -> float:
        return statistics.median(r[k] for r in rounds)

    ratios = [r["ratio"] for r in rounds]
    print(f"{args.count} creates each, {args.concurrency} concurrent HTTP clients, median of {args.rounds} rounds "
          f"(fresh server each)")
    print(f"services (random ClusterIP; {min(args.count, NODE_PORTS)} also a random NodePort): "
          f"{med('svc'):.0f} creates/s")
    print(f"configmaps (anchor, same write path, no allocation):  {med('cm'):.0f} creates/s")
    print(f"ratio services/configmaps (median of paired batches): {statistics.median(ratios):.2f}  (rounds: "
          + ", ".join(f"{x:.2f}" for x in ratios) + ")")
    print(f"in-process defaults+validation+allocation: {per_svc * 1e6:.0f} us/service "
          f"({1 / per_svc:.0f}/s; {per_svc * med('svc') * 100:.1f}% of one HTTP create's time)")
    print(f"repair pass over {rounds[0]['items']} stored services: {med('repair') * 1000:.1f} ms median "
          f"({rounds[0]['problems']} problems)")
    print(f"server restart to /readyz with them (+{args.count} configmaps): {med('restart'):.2f} s; "
          f"repair share: {med('repair') / med('restart') * 100:.1f}%")


if __name__ == "__main__":
    main()
