"""Pod start latency on one agent-run node: create -> Ready, p50/p99, and the agent's memory.

    sudo python3 bench/agent_start.py [--pods 50]

A throw-away namespace plays the node (API server and agent inside it, as the
integration tests run them); the measuring client runs in that namespace too,
so no traffic leaves it. All pods are created at once (a Deployment scaling up)
and each one's latency is from just before its create call to the watch event
that shows it Ready. The anchor, measured in the same run, is what any pod
start costs at least: a bare `ip netns add` plus spawning a process in it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


async def measure(server: str, node: str, count: int) -> dict:
    """Runs inside the node's namespace: create pods, time each to Ready, delete them."""
    from lightkube import codecs
    from lightkube.resources.core_v1 import Pod

    from kubesvc.client import make_client

    client = make_client(server=server, field_manager="bench")
    created: dict[str, float] = {}
    ready_at: dict[str, float] = {}
    done = asyncio.Event()

    async def watch() -> None:
        async for _, pod in client.watch(Pod, namespace="default", labels={"bench": "agent-start"}):
            name = pod.metadata.name
            conds = {c.type: c.status for c in (pod.status.conditions or [])} if pod.status else {}
            if conds.get("Ready") == "True" and name not in ready_at:
                ready_at[name] = time.perf_counter()
                if len(ready_at) == count:
                    done.set()

    w = asyncio.create_task(watch())
    await asyncio.sleep(0.5)  # the watch is open

    async def create(i: int) -> None:
        name = f"bench-{i:03d}"
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"bench": "agent-start"}},
                "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}
        created[name] = time.perf_counter()
        await client.create(codecs.from_dict(body))

    t0 = time.perf_counter()
    await asyncio.gather(*(create(i) for i in range(count)))
    await asyncio.wait_for(done.wait(), 300)
    all_ready = time.perf_counter() - t0
    w.cancel()
    lat = [ready_at[n] - created[n] for n in created]
    result = {"latencies": lat, "all_ready": all_ready}
    # Teardown figures: delete everything and wait until the objects are gone.
    t1 = time.perf_counter()
    await asyncio.gather(*(client.delete(Pod, n, namespace="default") for n in created))
    while [p async for p in client.list(Pod, namespace="default", labels={"bench": "agent-start"})]:
        await asyncio.sleep(0.1)
    result["all_deleted"] = time.perf_counter() - t1
    await client.close()
    return result


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def anchor(ns_prefix: str, count: int) -> list[float]:
    """A bare `ip netns add` plus spawning a process inside it, per pod."""
    times = []
    for i in range(count):
        name = f"{ns_prefix}-anchor{i}"
        t = time.perf_counter()
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "netns", "exec", name, "true"], check=True)
        times.append(time.perf_counter() - t)
        subprocess.run(["ip", "netns", "del", name], check=True)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=50)
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--server", help=argparse.SUPPRESS)
    ap.add_argument("--node", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(asyncio.run(measure(args.server, args.node, args.pods))))
        return
    if os.geteuid() != 0:
        sys.exit("needs root: network namespaces")

    from tests.lib.cluster import APIServer
    from tests.lib.netns import Topology, sh

    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-bench-agent-"))
    topo = Topology()
    api = None
    node_name = f"{topo.token}-bench"
    try:
        ns = topo.ns("bench")
        api = APIServer(tmp / "apiserver", netns=ns).start()
        log = open(tmp / "agent.log", "wb")
        agent = topo.popen(ns, [sys.executable, "-m", "kubesvc.cli", "agent", "--server", api.url,
                                "--node-name", node_name, "--node-ip", "127.0.0.1", "--pod-cidr", "10.244.1.0/24",
                                "--state-dir", str(tmp / "agent")], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while " Ready " not in api.kubectl("get", "node", node_name, check=False).stdout:
            if time.monotonic() > deadline:
                sys.exit("agent did not register: " + (tmp / "agent.log").read_text()[-2000:])
            time.sleep(0.2)
        rss_idle = rss_kib(agent.pid)
        anchor_times = anchor(f"ks{topo.token}", args.pods)

        # The agent's RSS is sampled all along the client's run (pods starting, running, going).
        inner = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, __file__, "--measure",
                                  "--server", api.url, "--node", node_name, "--pods", str(args.pods)],
                                 stdout=subprocess.PIPE, text=True)
        rss_peak = rss_idle
        while inner.poll() is None:
            rss_peak = max(rss_peak, rss_kib(agent.pid))
            time.sleep(0.05)
        res = json.loads(inner.stdout.read())
        lat = res["latencies"]
        a50 = statistics.median(anchor_times)
        p50, p99 = pct(lat, 50), pct(lat, 99)
        print(f"pods: {args.pods} created at once on one node (sleep 3600, no probes)")
        print(f"create -> Ready   p50 {p50 * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms   "
              f"all Ready after {res['all_ready']:.2f} s")
        print(f"anchor (ip netns add + spawn)   median {a50 * 1000:6.1f} ms")
        print(f"ratio p50/anchor {p50 / a50:.1f}x   p99/anchor {p99 / a50:.1f}x")
        print(f"all {args.pods} deleted (graceful, netns/veth/IP released) in {res['all_deleted']:.2f} s")
        print(f"agent RSS: idle {rss_idle / 1024:.1f} MiB, peak with {args.pods} pods {rss_peak / 1024:.1f} MiB")
    finally:
        topo.close()
        for line in sh("ip netns list").stdout.splitlines():
            if line.startswith((node_name + "-", f"ks{topo.token}")):
                n = line.split()[0]
                for pid in sh(f"ip netns pids {n}", check=False).stdout.split():
                    try:
                        os.kill(int(pid), 9)
                    except (ProcessLookupError, ValueError):
                        pass
                sh(f"ip netns del {n}", check=False)
        if api:
            api.stop()


if __name__ == "__main__":
    main()
