"""Feed a proxy data plane from a JSON file instead of informers (all data planes share it).

Runs inside the node namespace: `python -m tests.integration.proxy.driver MODE STATE [BACKEND] [--side-by-side]`,
MODE one of iptables, userspace, nftables, ipvs. STATE holds
{"generation": n, "services": [...], "slices": [...]} as Kubernetes objects (dicts);
each time it changes the objects go through the real change tracker and
ProxyServer.sync_once into the real data plane, then "synced <generation>" is
written to STATE.done (the FileFeed protocol of objects.py). Everything but the
informers is the production path, which keeps e.g. the IPVS VM run free of an
API server and kubectl under software emulation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

from lightkube.resources.core_v1 import Service
from lightkube.resources.discovery_v1 import EndpointSlice

from kubesvc.proxy.dataplanes.iptables import IptablesDataPlane, detect_backend
from kubesvc.proxy.dataplanes.userspace import UserspaceDataPlane
from kubesvc.proxy.server import ProxyServer

NODE_NAME = "node1"
NODE_IPS = ("192.168.50.1",)


def make_dataplane(mode: str, backend_choice: str = "auto", cleanup: bool = True):
    """The data plane MODE names, built as the tests and benchmarks expect it."""
    if mode == "nftables":
        from kubesvc.proxy.dataplanes import nft_rules
        from kubesvc.proxy.dataplanes.nftables import NftablesDataPlane
        # tests of the many-endpoints path (one anonymous numgen map) lower its threshold
        nft_rules.VMAP_MIN_ENDPOINTS = int(os.environ.get("KUBESVC_TEST_VMAP_MIN", nft_rules.VMAP_MIN_ENDPOINTS))
        return NftablesDataPlane(cleanup_leftovers=cleanup)
    backend, _ = detect_backend(backend_choice)
    if mode == "ipvs":
        from kubesvc.proxy.dataplanes.ipvs import IpvsDataPlane
        return IpvsDataPlane(backend, drain_interval=1.0, cleanup_leftovers=cleanup)
    if mode == "iptables":
        return IptablesDataPlane(backend, cleanup_leftovers=cleanup)
    if mode == "userspace":
        return UserspaceDataPlane(backend, cleanup_leftovers=cleanup)
    raise SystemExit(f"unknown mode {mode!r}")


async def sync(proxy: ProxyServer, dp, retries: int) -> None:
    await proxy.sync_once()
    # As ProxyServer's loop does: a failed sync is retried, from the kernel's state
    # (the ipvs scenarios rely on it under emulation; the others assert on single syncs).
    for _ in range(retries):
        if not dp._need_full:
            break
        await asyncio.sleep(0.2)
        await proxy.sync_once()


async def main(mode: str, path: str, backend_choice: str = "auto", cleanup: bool = True) -> None:
    dp = make_dataplane(mode, backend_choice, cleanup)
    proxy = ProxyServer(None, dp, node_name=NODE_NAME, node_ips=NODE_IPS, conntrack=True)
    seen: dict[str, tuple] = {}
    mtime = None
    while True:
        try:
            s = os.stat(path)
            st = (s.st_ino, s.st_mtime_ns)
        except FileNotFoundError:
            st = None
        if st != mtime:
            mtime = st
            with open(path) as f:
                state = json.load(f)
            objs = {}
            for kind, cls in (("services", Service), ("slices", EndpointSlice)):
                for d in state[kind]:
                    key = f"{kind}/{d['metadata'].get('namespace', 'default')}/{d['metadata']['name']}"
                    objs[key] = (kind, cls.from_dict(d))
            for key, (kind, obj) in seen.items():
                if key not in objs:
                    (proxy.tracker.service_delete if kind == "services" else proxy.tracker.slice_delete)(obj)
            for kind, obj in objs.values():
                (proxy.tracker.service_update if kind == "services" else proxy.tracker.slice_update)(obj)
            seen = objs
            await sync(proxy, dp, 5 if mode == "ipvs" else 0)
            with open(path + ".done.tmp", "w") as f:
                f.write(f"synced {state['generation']}\n")
            os.replace(path + ".done.tmp", path + ".done")
        await asyncio.sleep(0.02)


if __name__ == "__main__":
    import uvloop
    args = sys.argv[1:]
    if args[0] == "ipvs":  # the VM run prints the proxy's log when a scenario fails
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # --side-by-side: several data planes share the namespace (benchmarks): leave the others' rules
    cleanup = "--side-by-side" not in args
    args = [a for a in args if a != "--side-by-side"]
    uvloop.run(main(args[0], args[1], args[2] if len(args) > 2 else "auto", cleanup))
