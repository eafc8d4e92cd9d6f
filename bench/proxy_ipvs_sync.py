"""ipvs data plane sync times beside the iptables data plane (the anchor), in one run.

Needs a kernel with IPVS, so run it inside the VM:

    ../shared/tools/run-in-ipvs-vm.sh -C . -e PYTHONPATH=$PWD/src -- python3 bench/proxy_ipvs_sync.py

`--native` measures, on any machine and without root, only the Python side of a sync
(what the emulated VM cannot time fairly): diffing the desired services against the
kernel picture into a plan, the ipset script and rule text, and packing the netlink
messages, for a full sync from empty and a one-service change. Its anchor, in the same
process, is the iptables data plane's own computation (compute + render) of the same
state. Medians of --repeat runs.

For each size (1,000 and 10,000 services × 2 endpoints, ClusterIP services) and each
data plane, in a fresh network namespace: a full sync from empty, a one-service
change (one endpoint replaced: a partial sync), and a full resync with nothing
changed (drift repair, re-reading the kernel). The iptables anchor uses
iptables-legacy (iptables-nft takes minutes for 10,000 services; see
docs/benchmarks.md) so the two are compared on the fast iptables. Medians of
--repeat one-service changes are printed; the ratio is ipvs / iptables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))


def desired_state(n: int, gen: int = 0):
    from kubesvc.proxy.model import DesiredState, Endpoint, EndpointSet, ServiceEntry, ServicePort, ServicePortName
    services = {}
    for i in range(n):
        spn = ServicePortName("bench", f"svc-{i}", "http")
        cip = f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256}"
        a = 10 + (i * 2) % 60000
        eps = [Endpoint(f"10.244.{a // 256 % 256}.{a % 256}", 8080, "n1", True),
               Endpoint(f"10.244.{(a + 1) // 256 % 256}.{(a + 1) % 256}", 8080, "n1", True)]
        services[spn] = ServiceEntry(ServicePort(spn, cip, 80), EndpointSet.categorize(eps))
    return DesiredState(services, node_name="n1", node_ips=("192.168.99.1",))


def change_one(desired, k: int):
    """Replace one endpoint of service k: what a pod restart does."""
    from kubesvc.proxy.model import DesiredState, Endpoint, EndpointSet, ServiceEntry
    spn = list(desired.services)[k % len(desired.services)]
    old = desired.services[spn]
    eps = [old.endpoints.cluster[0], Endpoint(f"10.245.{k // 256 % 256}.{k % 256}", 8080, "n1", True)]
    services = dict(desired.services)
    services[spn] = ServiceEntry(old.port, EndpointSet.categorize(eps))
    return DesiredState(services, node_name="n1", node_ips=desired.node_ips, changed=frozenset({spn}))


def time_parts(dp) -> dict[str, float]:
    """Wrap the ipvs plane's kernel steps with timers (where a full sync's apply time goes)."""
    import functools
    import inspect

    from kubesvc.proxy.dataplanes import ipset as ipsets
    from kubesvc.proxy.dataplanes import ipvs as ipvs_mod
    parts: dict[str, float] = {}

    def wrap(owner, name, label):
        fn = getattr(owner, name)
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def timed(*a, **kw):
                t = time.perf_counter()
                try:
                    return await fn(*a, **kw)
                finally:
                    parts[label] = parts.get(label, 0.0) + time.perf_counter() - t
        else:
            @functools.wraps(fn)
            def timed(*a, **kw):
                t = time.perf_counter()
                try:
                    return fn(*a, **kw)
                finally:
                    parts[label] = parts.get(label, 0.0) + time.perf_counter() - t
        setattr(owner, name, timed)
    wrap(ipsets, "restore", "ipset restore")
    wrap(ipsets, "save", "ipset save")
    wrap(ipvs_mod, "ensure_jumps", "iptables -C jumps")
    wrap(dp, "_iptables", "iptables-restore")
    wrap(dp, "_read_kernel", "read kernel")
    wrap(dp, "_init_kernel", "first-sync setup")
    wrap(dp, "_apply_removals", "netlink removals")

    def netlink(pl, _orig=dp._apply_netlink):  # split IPVS requests from address bindings
        t = time.perf_counter()
        dummy_bind = dp._dummy.bind
        bind_t = [0.0]

        def bind(ips):
            tb = time.perf_counter()
            try:
                return dummy_bind(ips)
            finally:
                bind_t[0] += time.perf_counter() - tb
        dp._dummy.bind = bind
        try:
            return _orig(pl)
        finally:
            dp._dummy.bind = dummy_bind
            parts["kube-ipvs0 address binds"] = parts.get("kube-ipvs0 address binds", 0.0) + bind_t[0]
            parts["IPVS netlink"] = parts.get("IPVS netlink", 0.0) + time.perf_counter() - t - bind_t[0]
    dp._apply_netlink = netlink
    return parts


async def measure(plane: str, n: int, repeat: int, breakdown: bool = False) -> dict:
    from kubesvc.proxy.dataplanes.iptables import Backend, IptablesDataPlane
    parts = None
    if plane == "ipvs":
        from kubesvc.proxy.dataplanes.ipvs import IpvsDataPlane
        dp = IpvsDataPlane(Backend("legacy"))
        if breakdown:
            parts = time_parts(dp)
    else:
        dp = IptablesDataPlane(Backend("legacy"))
    d = desired_state(n)
    t = time.perf_counter()
    r = await dp.sync(d, full=True)
    full = time.perf_counter() - t
    full_parts = (r.compute_seconds, r.apply_seconds)
    if parts is not None:
        print(f"  ipvs full sync of {n}, where the time went: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])),
              file=sys.stderr, flush=True)
        parts.clear()
    ones = []
    for k in range(repeat):
        d = change_one(d, k)
        t = time.perf_counter()
        await dp.sync(d)
        ones.append(time.perf_counter() - t)
    t = time.perf_counter()
    await dp.sync(d, full=True)
    resync = time.perf_counter() - t
    if parts is not None:
        print(f"  ipvs resync of {n}, where the time went: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])),
              file=sys.stderr, flush=True)
    extra = {}
    if plane == "ipvs":
        extra["ipvs_virtual_servers"] = int(subprocess.run("ipvsadm -Ln | grep -c '^TCP'", shell=True,
                                                           capture_output=True, text=True).stdout or 0)
        extra["netlink_requests"] = dp._ipvs.nl.sent + dp._dummy.nl.sent
        extra["drain_check_virtual_servers"] = dp.last_reap_keys
    await dp.close()
    return {"plane": plane, "services": n, "full_s": full, "full_compute_s": full_parts[0],
            "full_apply_s": full_parts[1], "one_change_median_s": statistics.median(ones),
            "one_change_max_s": max(ones), "resync_s": resync, **extra}


def native(sizes: list[int], repeat: int) -> None:
    """The Python side of ipvs syncs vs the iptables data plane's, no kernel involved."""
    import gc

    from kubesvc.proxy.dataplanes import ipset as ipsets
    from kubesvc.proxy.dataplanes.base import changed_services
    from kubesvc.proxy.dataplanes.iptables import Backend, IptablesDataPlane
    from kubesvc.proxy.dataplanes.ipvs import IpvsDataPlane, render_rules
    from kubesvc.proxy.dataplanes.ipvs_netlink import IPVSClient

    client = IPVSClient.__new__(IPVSClient)  # packs messages; nothing is sent
    client.family = 42

    def ipvs_sync(dp, desired, full):
        t = time.perf_counter()
        gc.disable()  # as IpvsDataPlane.sync does
        try:
            changed = changed_services(desired, dp._applied, full)
            tv, ta, te = set(), set(), set()
            dp._update_contributions(desired, changed, tv, ta, te)
            pl = dp.plan(tv, ta, te, full)
            render_rules({n for n, c in dp._set_refs.items() if c > 0}, dp.cluster_cidr, sorted(dp._want_out))
            ipsets.render_restore(pl.set_adds, pl.set_dels, create=full)
            reqs = [client.add_service(k, sp) for k, sp in pl.vs_add.items()]
            reqs += [client.add_dest(k, d) for k, d in pl.dest_add]
            reqs += [client.set_dest(k, d, w) for k, d, w in pl.dest_weight]
            dp._commit_picture(pl)
        finally:
            gc.enable()
        return time.perf_counter() - t

    def iptables_sync(dp, desired, full):
        t = time.perf_counter()
        gc.disable()  # as IptablesDataPlane.sync does
        try:
            full, changed, old = dp.compute(desired, full)
            dp.render_full(set()) if full else dp.render_partial(changed, old)
        finally:
            gc.enable()
        return time.perf_counter() - t

    print(f"native Python side of a sync (no kernel), medians of {repeat}; anchor = the iptables data plane's "
          "compute + render of the same state")
    print(f"{'services':>8} {'plane':9} {'full ms':>9} {'1-change ms':>12}")
    for n in sizes:
        rows = {}
        for plane, make, run in (("iptables", lambda: IptablesDataPlane(Backend("legacy")), iptables_sync),
                                 ("ipvs", lambda: IpvsDataPlane(Backend("legacy")), ipvs_sync)):
            fulls, ones = [], []
            for _ in range(repeat):
                dp = make()
                if plane == "ipvs":
                    dp._node_addrs, dp._node_ip = ("192.168.99.1",), "192.168.99.1"
                d = desired_state(n)
                fulls.append(run(dp, d, True))
                for k in range(5):
                    d = change_one(d, k)
                    ones.append(run(dp, d, False))
            rows[plane] = (statistics.median(fulls), statistics.median(ones))
            print(f"{n:>8} {plane:9} {rows[plane][0] * 1000:>9.1f} {rows[plane][1] * 1000:>12.2f}", flush=True)
        (fa, oa), (fb, ob) = rows["iptables"], rows["ipvs"]
        print(f"  ratio ipvs/iptables at {n}: full {fb / fa:.2f}x, one change {ob / oa:.2f}x", flush=True)


def inner(args) -> None:
    import uvloop
    print(json.dumps(uvloop.run(measure(args.plane, args.services, args.repeat, args.breakdown))), flush=True)


def run_in_netns(plane: str, n: int, repeat: int, breakdown: bool = False) -> dict:
    ns = f"ipvsbench-{os.getpid()}-{plane}-{n}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "ip", "addr", "add", "192.168.99.1/24", "dev", "lo"], check=True)
        p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, "--inner", "--plane", plane,
                            "--services", str(n), "--repeat", str(repeat), *(["--breakdown"] if breakdown else [])],
                           capture_output=True, text=True, timeout=3600)
        if breakdown:
            print(p.stderr.strip(), flush=True)
        if p.returncode != 0:
            raise SystemExit(f"{plane} {n}: {p.stderr[-2000:]}")
        return json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["ip", "netns", "del", ns])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--inner", action="store_true")
    ap.add_argument("--plane", default="ipvs")
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--native", action="store_true", help="only the Python side, no kernel (any machine)")
    ap.add_argument("--planes", default="iptables,ipvs")
    ap.add_argument("--breakdown", action="store_true", help="print where an ipvs full sync's time goes")
    args = ap.parse_args()
    if args.inner:
        return inner(args)
    if args.native:
        return native([int(s) for s in args.sizes.split(",")], args.repeat)
    print(f"kernel {os.uname().release}; each size in a fresh namespace; iptables anchor = iptables-legacy")
    print(f"{'plane':9} {'services':>8} {'full s':>8} {'(compute':>9} {'apply)':>8} {'1-change ms':>12} "
          f"{'max ms':>8} {'resync s':>9}")
    for n in (int(s) for s in args.sizes.split(",")):
        rows = {}
        for plane in args.planes.split(","):
            r = rows[plane] = run_in_netns(plane, n, args.repeat, args.breakdown and plane == "ipvs")
            print(f"{plane:9} {n:>8} {r['full_s']:>8.2f} {r['full_compute_s']:>9.2f} {r['full_apply_s']:>8.2f} "
                  f"{r['one_change_median_s'] * 1000:>12.1f} {r['one_change_max_s'] * 1000:>8.1f} "
                  f"{r['resync_s']:>9.2f}", flush=True)
        if set(rows) != {"iptables", "ipvs"}:
            continue
        a, b = rows["iptables"], rows["ipvs"]
        print(f"  ratio ipvs/iptables at {n}: full {b['full_s'] / a['full_s']:.2f}x, one change "
              f"{b['one_change_median_s'] / a['one_change_median_s']:.2f}x, resync {b['resync_s'] / a['resync_s']:.2f}x"
              f"; ipvs virtual servers {b.get('ipvs_virtual_servers')}, netlink requests {b.get('netlink_requests')}"
              f", virtual servers the last drain check listed {b.get('drain_check_virtual_servers')}",
              flush=True)


if __name__ == "__main__":
    main()
