"""Data-path throughput through a ClusterIP: iptables, nftables and userspace vs a direct pod and HAProxy.

All inside throw-away namespaces (tests/integration/proxy/lab.py: a node namespace
with 3 pods behind a bridge, a client namespace beside it). wrk runs in the
client namespace; the same 3 pods serve every case:

  direct     wrk → pod0 directly (the anchor: what the pods can do)
  haproxy    wrk → HAProxy in the node namespace (mode tcp, roundrobin over the 3 pods, 1 thread)
  iptables   wrk → ClusterIP, kube-proxy's rules (kernel DNAT)
  nftables   wrk → ClusterIP, the nftables data plane (kernel DNAT)
  ipvs       wrk → ClusterIP, the ipvs data plane (only where the kernel has IPVS: run the
             bench in ../shared/tools/run-in-ipvs-vm.sh with --cases direct,iptables,ipvs)
  userspace  wrk → ClusterIP, REDIRECT to kubesvc's userspace relay (one Python process)

Per case: requests/s with keep-alive and with `Connection: close` (wrk, medians of
--repeat runs), bulk MB/s (curl of one large response) and the proxy process's CPU
per request (utime+stime: the figure that holds however loaded the machine is).
Ratios are printed against direct and against HAProxy, measured in the same run.
The client namespace reuses TIME_WAIT ports (see main): without that the close
runs measure the client's ephemeral-port exhaustion, not the proxies.

    python3 bench/proxy_datapath.py [--duration 5] [--repeat 3] [--connections 32] [--bulk-mb 512]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.integration.proxy.lab import NODE_IP, ProxyLab  # noqa: E402
from tests.integration.proxy.objects import FileFeed, endpoint_slice, service  # noqa: E402

CLUSTER_IP = "10.96.20.20"
HAPROXY_PORT = 8888


def wrk(lab: ProxyLab, url: str, duration: int, conns: int, close: bool) -> float:
    hdr = ["-H", "Connection: close"] if close else []
    p = subprocess.run(["ip", "netns", "exec", lab.client, "wrk", "-t1", f"-c{conns}", f"-d{duration}s",
                        *hdr, url], capture_output=True, text=True)
    m = re.search(r"Requests/sec:\s+([\d.]+)", p.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", p.stdout)
    if errors and errors.group(1):
        print(f"  ! {url}: {errors.group(0)}", file=sys.stderr)
    return float(m.group(1)) if m else 0.0


def cpu_seconds(pid: int | None) -> float:
    """utime+stime of a process (its threads included), in seconds."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bulk(lab: ProxyLab, url: str, mb: int) -> float:
    p = subprocess.run(["ip", "netns", "exec", lab.client, "curl", "-s", "-o", "/dev/null", "-w",
                        "%{speed_download}", "--max-time", "120", f"{url}/bytes/{mb * 1024 * 1024}"],
                       capture_output=True, text=True)
    try:
        return float(p.stdout) / 1e6
    except ValueError:
        return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--bulk-mb", type=int, default=512)
    ap.add_argument("--cases", default="direct,haproxy,iptables,nftables,userspace")
    args = ap.parse_args()
    load0 = Path("/proc/loadavg").read_text().split()[:3]
    lab = ProxyLab(extra_routes=("10.96.0.0/12", "10.96.0.0/12")).start()
    # wrk is a load generator: let it reuse its TIME_WAIT ports, as load generators are set
    # up. Without this the client runs out of ephemeral ports to one destination after
    # ~28,000 connections (a few seconds of connection-close load) and from then on connects
    # at the rate TIME_WAIT entries expire (~470/s) whatever the proxy: the 5-20x swings of
    # the close column between repeats were that, not the proxies.
    lab.topo.run(lab.client, "sysctl -qw net.ipv4.tcp_tw_reuse=1")
    lab.topo.run(lab.client, "sysctl -qw net.ipv4.ip_local_port_range='1024 65535'")
    cases = args.cases.split(",")
    samples: dict[str, dict[str, list[float]]] = {
        c: {"keepalive": [], "close": [], "bulk": [], "ka_cpu_us": [], "close_cpu_us": []} for c in cases}
    pids: dict[str, int | None] = {}
    try:
        pods = lab.pods
        with tempfile.TemporaryDirectory() as tmp:
            # Everything runs side by side; repeats interleave the cases so that the
            # machine's varying load hits all of them alike.
            bases = {}
            for i, case in enumerate(cases):
                if case == "direct":
                    lab.topo.run(lab.client, f"ip route add 10.244.1.0/24 via {NODE_IP}", check=False)
                    bases[case] = f"http://{pods[0].ip}:8080"
                elif case == "haproxy":
                    cfg = Path(tmp) / "haproxy.cfg"
                    cfg.write_text("\n".join([
                        "global", "  maxconn 8000", "  nbthread 1",
                        "defaults", "  mode tcp", "  timeout connect 5s", "  timeout client 60s",
                        "  timeout server 60s",
                        "frontend f", f"  bind 0.0.0.0:{HAPROXY_PORT}", "  default_backend b",
                        "backend b", "  balance roundrobin",
                        *(f"  server {p.name} {p.ip}:8080" for p in pods), ""]))
                    pids[case] = lab.topo.popen(lab.node, ["haproxy", "-db", "-f", str(cfg)],
                                                stdout=subprocess.DEVNULL,
                                                stderr=open(Path(tmp) / "haproxy.log", "w")).pid
                    bases[case] = f"http://{NODE_IP}:{HAPROXY_PORT}"
                else:
                    # each data plane gets its own ClusterIP; their chains do not overlap
                    ip = f"10.96.20.{20 + i}"
                    state = Path(tmp) / f"{case}.json"
                    state.write_text('{"generation": 0, "services": [], "slices": []}')
                    feed = FileFeed(state)
                    pids[case] = lab.topo.popen(lab.node, [sys.executable, "-m", "tests.integration.proxy.driver",
                                                           case, str(state), "--side-by-side"], cwd=ROOT,
                                                stderr=subprocess.DEVNULL).pid
                    feed.apply(service(f"bench-{case}", ip), endpoint_slice(f"bench-{case}", pods))
                    bases[case] = f"http://{ip}"
                deadline = time.monotonic() + 10
                while not lab.curl(lab.client, bases[case] + "/").stdout.strip().startswith("pod"):
                    if time.monotonic() > deadline:
                        log = (Path(tmp) / "haproxy.log").read_text() if case == "haproxy" else ""
                        raise SystemExit(f"{case}: no answer through {bases[case]} {log}")
                    time.sleep(0.1)
            for _ in range(args.repeat):
                for case in cases:
                    base = bases[case]
                    # iptables, nftables, ipvs: the kernel does the work
                    pid = pids.get(case) if case not in ("iptables", "nftables", "ipvs") else None
                    for kind, close in (("keepalive", False), ("close", True)):
                        c0 = cpu_seconds(pid)
                        rate = wrk(lab, base + "/", args.duration, args.connections, close)
                        samples[case][kind].append(rate)
                        # CPU the proxy process spent per request: comparable however loaded the machine is
                        cpu_key = "ka_cpu_us" if kind == "keepalive" else "close_cpu_us"
                        samples[case][cpu_key].append(
                            1e6 * (cpu_seconds(pid) - c0) / max(1.0, rate * args.duration) if pid else 0.0)
                    samples[case]["bulk"].append(bulk(lab, base, args.bulk_mb))
                    print(case, {k: v[-1] for k, v in samples[case].items()}, file=sys.stderr, flush=True)
    finally:
        lab.close()
    results = {c: {k: statistics.median(v) for k, v in samples[c].items()} for c in cases}
    print(f"\n{'case':10} {'keep-alive req/s':>17} {'close req/s':>12} {'bulk MB/s':>10} "
          f"{'cpu us/req (ka, close)':>23} | {'vs direct (ka, close, bulk)':>28} | vs haproxy (ka, close, bulk)")
    d, h = results.get("direct"), results.get("haproxy")
    for case, r in results.items():
        def ratio(ref):
            if not ref:
                return "-"
            return ", ".join(f"{r[k] / ref[k]:.2f}x" if ref[k] else "-" for k in ("keepalive", "close", "bulk"))
        cpu = f"{r['ka_cpu_us']:.1f}, {r['close_cpu_us']:.1f}" if r["ka_cpu_us"] else "-"
        print(f"{case:10} {r['keepalive']:>17.0f} {r['close']:>12.0f} {r['bulk']:>10.0f} {cpu:>23} | "
              f"{ratio(d):>28} | {ratio(h)}")
    print(f"(wrk -t1 -c{args.connections} -d{args.duration}s, medians of {args.repeat}, cases interleaved; bulk = one "
          f"{args.bulk_mb} MiB response; cpu = CPU of the proxy process per request; targets: userspace >= 0.8x "
          f"HAProxy req/s, >= 1.0x its bulk MB/s)")
    print(f"load average at start {' '.join(load0)}, at end {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
