"""Feed the ipvs data plane from a JSON state file (as tests/integration/proxy/driver.py does).

Runs inside the node namespace: `python -m tests.integration.proxy_ipvs.driver STATE`.
Each time STATE changes its Services and EndpointSlices go through the real change
tracker and ProxyServer.sync_once into the real IpvsDataPlane, then
"synced <generation>" is written to STATE.done (the FileFeed protocol of
tests/integration/proxy/objects.py). Only the informers are left out, which keeps
the VM run free of an API server and kubectl under software emulation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

from lightkube.resources.core_v1 import Service
from lightkube.resources.discovery_v1 import EndpointSlice

from kubesvc.proxy.dataplanes.iptables import detect_backend
from kubesvc.proxy.dataplanes.ipvs import IpvsDataPlane
from kubesvc.proxy.server import ProxyServer


async def main(path: str) -> None:
    backend, _ = detect_backend("auto")
    dp = IpvsDataPlane(backend, drain_interval=1.0)
    proxy = ProxyServer(None, dp, node_name="node1", node_ips=("192.168.50.1",), conntrack=True)
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
            await proxy.sync_once()
            for _ in range(5):  # as ProxyServer's loop does: a failed sync is retried, from the kernel's state
                if not dp._need_full:
                    break
                await asyncio.sleep(0.2)
                await proxy.sync_once()
            with open(path + ".done.tmp", "w") as f:
                f.write(f"synced {state['generation']}\n")
            os.replace(path + ".done.tmp", path + ".done")
        await asyncio.sleep(0.02)


if __name__ == "__main__":
    import uvloop
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvloop.run(main(sys.argv[1]))
