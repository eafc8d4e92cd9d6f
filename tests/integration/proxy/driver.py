"""Stand-in for the API server while it is being built: feed a proxy from a JSON file.

Runs inside the node namespace: `python -m tests.integration.proxy.driver --mode M STATE`.
STATE holds {"generation": n, "services": [...], "slices": [...]} as Kubernetes
objects (dicts); each time it changes the objects go through the real change
tracker and ProxyServer.sync_once into the real data plane, then
"synced <generation>" is written to STATE.done. Everything but the informers is
the production path.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from lightkube.resources.core_v1 import Service
from lightkube.resources.discovery_v1 import EndpointSlice

from kubesvc.proxy.dataplanes.iptables import IptablesDataPlane, detect_backend
from kubesvc.proxy.dataplanes.userspace import UserspaceDataPlane
from kubesvc.proxy.server import ProxyServer


async def main(mode: str, path: str, backend_choice: str, cleanup: bool) -> None:
    backend, _ = detect_backend(backend_choice)
    dp = (IptablesDataPlane(backend, cleanup_leftovers=cleanup) if mode == "iptables"
          else UserspaceDataPlane(backend, cleanup_leftovers=cleanup))
    proxy = ProxyServer(None, dp, node_name="node1", node_ips=("192.168.50.1",), conntrack=True)
    seen: dict[str, dict] = {}
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
                    objs[f"{kind}/{d['metadata'].get('namespace', 'default')}/{d['metadata']['name']}"] = (kind, cls.from_dict(d))
            for key, (kind, obj) in seen.items():
                if key not in objs:
                    (proxy.tracker.service_delete if kind == "services" else proxy.tracker.slice_delete)(obj)
            for key, (kind, obj) in objs.items():
                (proxy.tracker.service_update if kind == "services" else proxy.tracker.slice_update)(obj)
            seen = objs
            await proxy.sync_once()
            with open(path + ".done.tmp", "w") as f:
                f.write(f"synced {state['generation']}\n")
            os.replace(path + ".done.tmp", path + ".done")
        await asyncio.sleep(0.02)


if __name__ == "__main__":
    import uvloop
    args = sys.argv[1:]
    # --side-by-side: several data planes share the namespace (benchmarks): leave the others' rules
    cleanup = "--side-by-side" not in args
    args = [a for a in args if a != "--side-by-side"]
    uvloop.run(main(args[0], args[1], args[2] if len(args) > 2 else "auto", cleanup))
