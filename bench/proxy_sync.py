"""iptables data plane sync time: full and one-service-change, 1,000 and 10,000 services × 2 endpoints.

Runs inside a throw-away network namespace (re-executes itself under
`ip netns exec`), once per backend (iptables-legacy, iptables-nft). Rule
computation (Python: rules for changed services + restore text) and
iptables-restore (kernel) are reported apart. Anchor: the same input to the
legacy backend in the same run, and the targets (full 10k < 2 s, one change < 100 ms).
One change is measured two ways: a service's endpoint moving (its own chains
rewritten) and a service created then deleted (KUBE-SERVICES edited as well).

    python3 bench/proxy_sync.py [--sizes 1000,10000] [--backends legacy,nft] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def state(n: int, gen: int = 0):
    from kubesvc.proxy.model import Endpoint, EndpointSet, ServiceEntry, ServicePort, ServicePortName
    services = {}
    for i in range(n):
        spn = ServicePortName(f"ns{i % 50}", f"svc{i}", "http", "TCP")
        eps = [Endpoint(f"10.244.{(2 * i + j) // 250 % 250}.{(2 * i + j) % 250 + 1}", 8080, "n1", True)
               for j in range(2)]
        services[spn] = ServiceEntry(ServicePort(spn, f"10.96.{i // 250}.{i % 250 + 1}", 80, "TCP",
                                                 node_port=30000 + i if i < 2000 else 0),
                                     EndpointSet.categorize(eps))
    return services


def _cpu() -> tuple[float, float]:
    """(this process, finished children) CPU seconds: figures that survive a loaded machine."""
    import resource
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), ch.ru_utime + ch.ru_stime


async def timed_sync(dp, desired, **kw):
    c0 = _cpu()
    res = await dp.sync(desired, **kw)
    c1 = _cpu()
    return res, c1[0] - c0[0], c1[1] - c0[1]


async def measure(backend: str, n: int, repeat: int) -> dict:
    from kubesvc.proxy.dataplanes.iptables import Backend, IptablesDataPlane
    from kubesvc.proxy.model import (DesiredState, Endpoint, EndpointSet, ServiceEntry, ServicePort,
                                     ServicePortName)
    base = state(n)
    fulls, changes, adds = [], [], []
    for r in range(repeat):
        subprocess.run(f"{Backend(backend).save} >/dev/null; iptables-{backend} -t nat -F; "
                       f"iptables-{backend} -t nat -X; iptables-{backend} -t filter -F; iptables-{backend} -t filter -X",
                       shell=True, capture_output=True)
        dp = IptablesDataPlane(Backend(backend))
        dp._need_full = False  # empty namespace: skip the iptables-save of a previous run
        res, cpu_self, cpu_kids = await timed_sync(dp, DesiredState(dict(base)), full=True)
        fulls.append((res.compute_seconds, res.apply_seconds, cpu_self, cpu_kids, res.other_seconds))
        # one service changes its endpoints (a pod moved): a partial sync
        victim = sorted(base)[n // 2]
        e = base[victim]
        moved = ServiceEntry(e.port, EndpointSet.categorize(
            [e.endpoints.cluster[0], Endpoint("10.250.0.%d" % (r + 1), 8080, "n1", True)]))
        for k in range(3):
            cur = dict(base)
            cur[victim] = moved if k % 2 == 0 else e
            # with the tracker's hint, as the proxy passes it
            res, cpu_self, cpu_kids = await timed_sync(dp, DesiredState(cur, changed=frozenset([victim])))
            assert not res.full
            changes.append((res.compute_seconds, res.apply_seconds, cpu_self, cpu_kids))
        # a service created, then deleted: its line in KUBE-SERVICES comes and goes as well
        spn = ServicePortName("bench", f"new{r}", "http", "TCP")
        created = ServiceEntry(ServicePort(spn, "10.99.0.%d" % (r + 1), 80, "TCP"),
                               EndpointSet.categorize([Endpoint("10.250.1.1", 8080, "n1", True)]))
        for k in range(2):
            cur = dict(base) if k % 2 else {**base, spn: created}
            res, _, _ = await timed_sync(dp, DesiredState(cur, changed=frozenset([spn])))
            assert not res.full
            adds.append(res.compute_seconds + res.apply_seconds)
    med = lambda xs: statistics.median(xs)  # noqa: E731
    return {"backend": backend, "services": n,
            "full_compute_s": med([f[0] for f in fulls]), "full_restore_s": med([f[1] for f in fulls]),
            # wall of the whole sync: + the jumps from built-in chains and the backend hint
            "full_other_s": med([f[4] for f in fulls]),
            "full_total_s": med([f[0] + f[1] + f[4] for f in fulls]),
            "full_cpu_s": med([f[2] + f[3] for f in fulls]), "full_cpu_restore_s": med([f[3] for f in fulls]),
            "change_compute_ms": 1000 * med([c[0] for c in changes]),
            "change_restore_ms": 1000 * med([c[1] for c in changes]),
            "change_total_ms": 1000 * med([c[0] + c[1] for c in changes]),
            "change_cpu_ms": 1000 * med([c[2] + c[3] for c in changes]),
            "change_cpu_restore_ms": 1000 * med([c[3] for c in changes]),
            "add_delete_ms": 1000 * med(adds)}


def inner(args) -> None:
    import uvloop
    out = []
    for backend in args.backends.split(","):
        for n in map(int, args.sizes.split(",")):
            rep = args.repeat
            out.append(uvloop.run(measure(backend, n, rep)))
            print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--backends", default="legacy,nft")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--inner", action="store_true")
    args = ap.parse_args()
    if args.inner:
        return inner(args)
    ns = f"ksbench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, "--inner", "--sizes", args.sizes,
                            "--backends", args.backends, "--repeat", str(args.repeat)],
                           stdout=subprocess.PIPE, text=True, check=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns])
    rows = json.loads(p.stdout.strip().splitlines()[-1])
    legacy = {r["services"]: r for r in rows if r["backend"] == "legacy"}
    print(f"{'backend':8} {'services':>8} | {'full: compute':>13} {'restore':>8} {'other':>6} {'total':>8} {'cpu':>7} | "
          f"{'1 change: compute':>17} {'restore':>8} {'total':>8} {'cpu':>8} | {'svc add/del':>11} | "
          "vs legacy (full, change; cpu)")
    for r in rows:
        ref = legacy.get(r["services"])
        ratio = (f"{r['full_cpu_s'] / ref['full_cpu_s']:.2f}x, {r['change_cpu_ms'] / ref['change_cpu_ms']:.2f}x"
                 if ref else "-")
        print(f"{r['backend']:8} {r['services']:>8} | {r['full_compute_s']:>12.3f}s {r['full_restore_s']:>7.3f}s "
              f"{r['full_other_s']:>5.2f}s {r['full_total_s']:>7.3f}s {r['full_cpu_s']:>6.2f}s | {r['change_compute_ms']:>15.1f}ms "
              f"{r['change_restore_ms']:>6.1f}ms {r['change_total_ms']:>6.1f}ms {r['change_cpu_ms']:>6.1f}ms | {r['add_delete_ms']:>9.1f}ms | {ratio}")
    print("compute/restore/total: wall clock; cpu: CPU seconds of the proxy and iptables-restore together "
          "(what a quiet machine would take, roughly)")
    print("targets: full sync of 10,000 services < 2 s; one-service change < 100 ms")


if __name__ == "__main__":
    main()
