"""nftables data plane sync time: full and one-service change, 1,000 and 10,000 services × 2 endpoints.

Runs inside a throw-away network namespace (re-executes itself under `ip netns
exec`). For each size, in one run:

* nftables (this data plane): a full sync into an empty namespace, a full resync
  over the same table (the periodic drift repair), and one service's endpoints
  changing (a partial sync, through libnftables in-process as the proxy does it,
  and the same through `nft -f` for comparison) — rule generation (Python) and
  the transaction (nft + kernel) reported apart, with CPU time beside wall time;
* nft baseline: one map element added and removed with `nft -f` against the same
  table — what the nft program costs before any work of ours (it reads the
  table's chains into its cache first);
* kube-proxy's spreading (`numgen random mod N vmap { ... }`, an anonymous set
  per service) with the same data plane, to show the quadratic load this layout
  avoids (only up to --vmap-max services: 10,000 takes about a minute);
* a service created then deleted (its chain and map element come and go), beside
  the endpoint change;
* anchor: the iptables data plane on the same desired state, iptables-legacy (the
  ratios) and iptables-nft.

    python3 bench/proxy_nft_sync.py [--sizes 1000,10000] [--repeat 3] [--vmap-max 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

med = statistics.median


def child_cpu() -> float:
    """CPU seconds used by this process and its finished children (nft runs): wall
    time on a shared machine includes waiting for a core; this does not."""
    return sum(ru.ru_utime + ru.ru_stime for ru in (resource.getrusage(resource.RUSAGE_CHILDREN),
                                                    resource.getrusage(resource.RUSAGE_SELF)))


def state(n: int):
    from proxy_sync import state as iptables_bench_state  # the same services as the iptables bench
    return iptables_bench_state(n)


def moved(base, victim, r: int):
    from kubesvc.proxy.model import Endpoint, EndpointSet, ServiceEntry
    e = base[victim]
    return ServiceEntry(e.port, EndpointSet.categorize([e.endpoints.cluster[0],
                                                        Endpoint("10.250.0.%d" % (r + 1), 8080, "n1", True)]))


def created_service(r: int) -> dict:
    from kubesvc.proxy.model import Endpoint, EndpointSet, ServiceEntry, ServicePort, ServicePortName
    spn = ServicePortName("bench", f"new{r}", "http", "TCP")
    return {spn: ServiceEntry(ServicePort(spn, "10.99.0.%d" % (r + 1), 80, "TCP"),
                              EndpointSet.categorize([Endpoint("10.250.1.1", 8080, "n1", True)]))}


def clean() -> None:
    subprocess.run("nft flush ruleset", shell=True, capture_output=True)


async def nft_run(text: str) -> float:
    t = time.perf_counter()
    p = await asyncio.create_subprocess_exec("nft", "-f", "-", stdin=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.PIPE)
    _, err = await p.communicate(text.encode())
    assert p.returncode == 0, err.decode()
    return time.perf_counter() - t


async def measure_nft(n: int, repeat: int, vmap: bool = False) -> dict:
    from kubesvc.proxy.dataplanes import nft_rules
    from kubesvc.proxy.dataplanes.nftables import NftablesDataPlane
    from kubesvc.proxy.model import DesiredState
    saved = nft_rules.VMAP_MIN_ENDPOINTS
    nft_rules.VMAP_MIN_ENDPOINTS = 1 if vmap else saved
    try:
        base = state(n)
        victim = sorted(base)[n // 2]
        fulls, resyncs, changes, baseline, full_cpu, change_cpu, changes_sub, adds = [], [], [], [], [], [], [], []
        for r in range(repeat):
            clean()
            dp = NftablesDataPlane(cleanup_leftovers=False)  # the anchor's rules share the namespace
            c0 = child_cpu()
            res = await dp.sync(DesiredState(dict(base)))
            fulls.append((res.compute_seconds, res.apply_seconds))
            full_cpu.append(child_cpu() - c0)
            if vmap:
                continue
            res = await dp.sync(DesiredState(dict(base)), full=True)
            resyncs.append((res.compute_seconds, res.apply_seconds))
            lib = dp._lib
            for k in range(6):
                # in-process libnftables (what the proxy uses), then nft -f in a child, alternating
                dp._lib = lib if k % 2 == 0 else None
                cur = dict(base)
                cur[victim] = moved(base, victim, r) if k % 2 == 0 else base[victim]
                c0 = child_cpu()
                res = await dp.sync(DesiredState(cur, changed=frozenset({victim})))
                assert not res.full and res.services_written == 1
                if dp._lib is not None:
                    changes.append((res.compute_seconds, res.apply_seconds))
                    change_cpu.append(child_cpu() - c0)
                else:
                    changes_sub.append(res.compute_seconds + res.apply_seconds)
            dp._lib = lib
            # a service created, then deleted: its map element and chain come and go as well
            created = created_service(r)
            for k in range(2):
                cur = dict(base) if k % 2 else {**base, **created}
                res = await dp.sync(DesiredState(cur, changed=frozenset(created)))
                assert not res.full
                adds.append(res.compute_seconds + res.apply_seconds)
            key = "10.255.255.1 . tcp . 1"
            baseline.append((await nft_run(f"add element ip kube-proxy service-ips {{ {key} : drop }}\n")
                             + await nft_run(f"delete element ip kube-proxy service-ips {{ {key} }}\n")) / 2)
        row = {"plane": "nft-vmap" if vmap else "nftables", "services": n,
               "full_compute_s": med(c for c, _ in fulls), "full_apply_s": med(a for _, a in fulls),
               "full_total_s": med(c + a for c, a in fulls), "full_nft_cpu_s": med(full_cpu)}
        if not vmap:
            row |= {"resync_total_s": med(c + a for c, a in resyncs),
                    "change_compute_ms": 1000 * med(c for c, _ in changes),
                    "change_apply_ms": 1000 * med(a for _, a in changes),
                    "change_total_ms": 1000 * med(c + a for c, a in changes),
                    "change_nft_cpu_ms": 1000 * med(change_cpu),
                    "change_nft_f_ms": 1000 * med(changes_sub),
                    "nft_baseline_ms": 1000 * med(baseline),
                    "add_delete_ms": 1000 * med(adds)}
        return row
    finally:
        nft_rules.VMAP_MIN_ENDPOINTS = saved
        clean()


async def measure_iptables(backend: str, n: int, repeat: int) -> dict:
    from proxy_sync import measure
    row = await measure(backend, n, repeat)
    return {"plane": f"iptables-{backend}", "services": n, "full_compute_s": row["full_compute_s"],
            "full_apply_s": row["full_restore_s"], "full_total_s": row["full_total_s"],
            "change_compute_ms": row["change_compute_ms"], "change_apply_ms": row["change_restore_ms"],
            "change_total_ms": row["change_total_ms"], "add_delete_ms": row["add_delete_ms"]}


def inner(args) -> None:
    import uvloop
    out = []
    for n in map(int, args.sizes.split(",")):
        rep = args.repeat if n < 10000 else max(1, args.repeat - 1)
        for backend in ("legacy", "nft"):
            out.append(uvloop.run(measure_iptables(backend, n, rep)))
            print(json.dumps(out[-1]), file=sys.stderr, flush=True)
        out.append(uvloop.run(measure_nft(n, rep)))
        print(json.dumps(out[-1]), file=sys.stderr, flush=True)
        if n <= args.vmap_max:
            out.append(uvloop.run(measure_nft(n, 1, vmap=True)))
            print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--vmap-max", type=int, default=3000)
    ap.add_argument("--inner", action="store_true")
    args = ap.parse_args()
    if args.inner:
        return inner(args)
    ns = f"ksbench-nft-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, "--inner", "--sizes", args.sizes,
                            "--repeat", str(args.repeat), "--vmap-max", str(args.vmap_max)],
                           stdout=subprocess.PIPE, text=True, check=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns])
    rows = json.loads(p.stdout.strip().splitlines()[-1])
    anchor = {r["services"]: r for r in rows if r["plane"] == "iptables-legacy"}
    print(f"{'plane':16} {'services':>8} | {'full: gen':>9} {'apply':>8} {'total':>8} {'resync':>8} | "
          f"{'1 change: gen':>13} {'apply':>8} {'total':>8} {'nft -f':>8} {'nft alone':>9} | {'svc add/del':>11} | "
          "vs iptables-legacy (full, change)")
    for r in rows:
        a = anchor[r["services"]]
        ratio_full = f"{r['full_total_s'] / a['full_total_s']:.2f}x"
        ratio_change = f"{r['change_total_ms'] / a['change_total_ms']:.2f}x" if "change_total_ms" in r else "-"
        resync = f"{r['resync_total_s']:.3f}s" if "resync_total_s" in r else "-"
        chg = (f"{r['change_compute_ms']:>11.1f}ms {r['change_apply_ms']:>6.1f}ms {r['change_total_ms']:>6.1f}ms"
               if "change_total_ms" in r else f"{'-':>13} {'-':>8} {'-':>8}")
        via = f"{r['change_nft_f_ms']:>6.1f}ms" if "change_nft_f_ms" in r else f"{'-':>8}"
        base = f"{r['nft_baseline_ms']:>7.1f}ms" if "nft_baseline_ms" in r else f"{'-':>9}"
        add = f"{r['add_delete_ms']:>9.1f}ms" if "add_delete_ms" in r else f"{'-':>11}"
        print(f"{r['plane']:16} {r['services']:>8} | {r['full_compute_s']:>8.3f}s {r['full_apply_s']:>7.3f}s "
              f"{r['full_total_s']:>7.3f}s {resync:>8} | {chg} {via} {base} | {add} | {ratio_full}, {ratio_change}")
    for r in rows:
        if "full_nft_cpu_s" in r:
            extra = (f"; one change {r['change_nft_cpu_ms']:.1f} ms" if "change_nft_cpu_ms" in r else "")
            print(f"CPU, proxy + nft ({r['plane']}, {r['services']}): full {r['full_nft_cpu_s']:.3f} s{extra}")
    print("targets: nftables full sync of 10,000 services < 2 s; one-service change < 50 ms")
    print("apply = the transaction (full: nft -f in a child; change: libnftables in-process, as the proxy does); "
          "nft -f = the same change through nft -f; nft alone = one element added or removed with nft -f "
          "on the same table: the nft program's own cost before any work of ours")


if __name__ == "__main__":
    main()
