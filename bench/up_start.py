"""How long `kubesvc up` takes to bring a node up and to stop it, against the API server alone.

Each round, in a fresh network namespace with a fresh data dir (root needed):
  - anchor: `kubesvc apiserver` from exec to /readyz answering (the first step of `up`);
  - `kubesvc up` from exec to its "kubesvc is up" block (API server, controllers,
    agent with its Node Ready, proxy synced, cluster DNS pod ready behind kube-dns);
  - `kubesvc up` again on the stored world with 3 myapp pods: exec to the block,
    and to the 3 pods Ready behind their service again;
  - Ctrl-C to exit, pods included.
Prints medians and the ratio up / apiserver.  Usage: sudo python3 bench/up_start.py [rounds]
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.up.harness import MANIFESTS, UpNode, wait_for  # noqa: E402
from tests.lib.netns import Topology  # noqa: E402


def apiserver_ready(tmp: Path) -> float:
    with Topology() as topo:
        ns = topo.ns("api")
        t0 = time.monotonic()
        topo.popen(ns, [sys.executable, "-m", "kubesvc.cli", "apiserver", "--data-dir", str(tmp / "api"),
                        "--listen", "127.0.0.1:6443"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: topo.run(ns, "curl -sf -o /dev/null http://127.0.0.1:6443/readyz", check=False)
                 .returncode == 0, 60, "apiserver", interval=0.02)
        return time.monotonic() - t0


def up_round(tmp: Path) -> dict[str, float]:
    node = UpNode(tmp)
    out: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        node.start()
        out["up"] = time.monotonic() - t0
        node.kubectl("apply", "-f", str(MANIFESTS / "myapp-deployment.yaml"))
        node.kubectl("apply", "-f", str(MANIFESTS / "myapp-svc.yaml"))
        wait_for(lambda: len(node.endpoint_ips("myapp")) == 3, 90, "3 endpoints")
        t0 = time.monotonic()
        node.interrupt(90)
        out["stop (3 pods)"] = time.monotonic() - t0
        t0 = time.monotonic()
        node.start()
        out["up again (stored world)"] = time.monotonic() - t0
        wait_for(lambda: len(node.endpoint_ips("myapp")) == 3, 90, "3 endpoints again", interval=0.1)
        out["up again to 3 pods ready"] = time.monotonic() - t0
    finally:
        node.close()
    return out


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    anchors, runs = [], []
    for i in range(rounds):
        tmp = Path(tempfile.mkdtemp(prefix="kubesvc-bench-up-"))
        try:
            anchors.append(apiserver_ready(tmp))
            runs.append(up_round(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"round {i + 1}: apiserver {anchors[-1]:.2f}s, "
              + ", ".join(f"{k} {v:.2f}s" for k, v in runs[-1].items()), flush=True)
    anchor = statistics.median(anchors)
    print(f"\nmedians over {rounds} rounds (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"  anchor: kubesvc apiserver to /readyz   {anchor:6.2f} s")
    for key in runs[0]:
        med = statistics.median(r[key] for r in runs)
        print(f"  {key:<34} {med:6.2f} s   ratio to anchor {med / anchor:5.1f}")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main()
