"""The ipvs data plane: kube-proxy's ipvs layout (pkg/proxy/ipvs/proxier.go).

What the node gets, as on a kube-proxy node in ipvs mode:

- a dummy link ``kube-ipvs0`` holding every service address (ClusterIPs,
  externalIPs and LoadBalancer ingress IPs that are not already node addresses),
  so the kernel takes traffic to them into INPUT where IPVS picks it up;
- one IPVS virtual server per address:port/protocol (ClusterIP, each externalIP,
  each LB IP, and each node address for a NodePort) with the service's endpoints
  as masqueraded real servers, the ``--ipvs-scheduler`` (rr by default), and
  sessionAffinity ClientIP as a persistent service with its timeout;
- the ipsets (ipset.py) and the few iptables rules kube-proxy keeps in ipvs mode:
  masquerade marks for off-cluster ClusterIP traffic, NodePorts, externalIPs and
  LB IPs, the hairpin MASQUERADE (KUBE-LOOP-BACK), KUBE-POSTROUTING, source
  ranges, and KUBE-IPVS-FILTER refusing other ports on service addresses.

A sync diffs what should be against a picture of the kernel: a *partial* sync
touches only the virtual servers, addresses and set entries of services that
changed; a *full* sync (first sync, drift repair, after an error) first re-reads
the kernel (/proc/net/ip_vs, kube-ipvs0's addresses, ``ipset save``), so a
restarted proxy converges to the same state without flushing anything.

A removed TCP real server is not deleted at once: its weight drops to 0 (no new
connections) and it is deleted once its connections are gone, as kube-proxy's
graceful termination manager does; UDP/SCTP ones are deleted at once
(expire_nodest_conn=1 then moves their flows).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from kubesvc.proxy.dataplanes import ipset as ipsets
from kubesvc.proxy.dataplanes.base import SyncResult, changed_services
from kubesvc.proxy.dataplanes.iptables import Backend, ensure_jumps
from kubesvc.proxy.dataplanes.ipvs_netlink import (FLAG_PERSISTENT, FLAG_SOURCE_HASH, DUMMY_DEVICE, Dest,
                                                   VSKey, VSSpec)
from kubesvc.proxy.model import DesiredState, ServiceEntry, ServicePortName

log = logging.getLogger(__name__)

MASQ_MARK = "0x4000"
SYSCTLS = {
    # IPVS must leave conntrack entries so KUBE-POSTROUTING can masquerade what it forwards.
    "net/ipv4/vs/conntrack": "1",
    # A packet of a flow whose real server is gone drops that flow (it reschedules next time).
    "net/ipv4/vs/expire_nodest_conn": "1",
    # Persistence templates of a weight-0 real server expire, so affinity moves off it.
    "net/ipv4/vs/expire_quiescent_template": "1",
    "net/ipv4/ip_forward": "1",
}

NAT_CHAINS = ("KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER", "KUBE-MARK-MASQ")
FILTER_CHAINS = ("KUBE-FORWARD", "KUBE-NODE-PORT", "KUBE-PROXY-FIREWALL", "KUBE-SOURCE-RANGES-FIREWALL",
                 "KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER")
# Jumps from the built-in chains (kube-proxy's iptablesJumpChain), ensured at the top.
JUMPS = [
    ("nat", "OUTPUT", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'),
    ("filter", "FORWARD", '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'),
    ("filter", "INPUT", '-m comment --comment "kubernetes health check rules" -j KUBE-NODE-PORT'),
    ("filter", "INPUT", '-m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL'),
    ("filter", "FORWARD", '-m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL'),
    ("filter", "INPUT", '-m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER'),
    ("filter", "OUTPUT", '-m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-OUT-FILTER'),
]
# Chains the iptables data plane leaves behind; the first full sync empties them so a
# mode switch does not keep stale DNATs or REJECTs in front of IPVS.
IPTABLES_MODE_LEFTOVERS = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")
IPTABLES_MODE_SHARED = {"nat": ("KUBE-NODEPORTS",),
                        "filter": ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS")}


# -- what one service port asks of the kernel (pure) -------------------------------------

@dataclass(frozen=True)
class Contribution:
    """The virtual servers, kube-ipvs0 addresses and set entries one service port needs."""

    vs: dict[VSKey, tuple[VSSpec, frozenset[Dest]]] = field(default_factory=dict)
    addrs: frozenset[str] = frozenset()
    sets: dict[str, frozenset[str]] = field(default_factory=dict)


def service_contribution(entry: ServiceEntry, scheduler: str = "rr",
                         node_addrs: tuple[str, ...] = ()) -> Contribution:
    """kube-proxy's syncProxyRules body for one service port."""
    sp = entry.port
    proto, p = sp.protocol.upper(), sp.proto
    flags = (FLAG_PERSISTENT if sp.affinity_timeout else 0) | (FLAG_SOURCE_HASH if scheduler == "mh" else 0)
    spec = VSSpec(scheduler, flags, sp.affinity_timeout)
    internal = frozenset(Dest(e.ip, e.port) for e in entry.cluster_endpoints)
    external = frozenset(Dest(e.ip, e.port) for e in entry.external_endpoints)
    local = sp.external_policy_local
    vs: dict[VSKey, tuple[VSSpec, frozenset[Dest]]] = {}
    addrs: set[str] = set()
    sets: dict[str, set[str]] = {}
    add = lambda name, e: sets.setdefault(name, set()).add(e)  # noqa: E731
    node_set = set(node_addrs)

    for ep in entry.endpoints.all:  # hairpin: a local endpoint reaching itself through the service
        if ep.is_local:
            add(ipsets.LOOP_BACK, f"{ep.ip},{p}:{ep.port},{ep.ip}")
    if sp.cluster_ip and sp.cluster_ip != "None":
        add(ipsets.CLUSTER_IP, f"{sp.cluster_ip},{p}:{sp.port}")
        vs[VSKey(proto, sp.cluster_ip, sp.port)] = (spec, internal)
        addrs.add(sp.cluster_ip)
    for ip in sp.external_ips:
        add(ipsets.EXTERNAL_IP_LOCAL if local else ipsets.EXTERNAL_IP, f"{ip},{p}:{sp.port}")
        vs[VSKey(proto, ip, sp.port)] = (spec, external)
        if ip not in node_set:  # never move a node's own address onto kube-ipvs0
            addrs.add(ip)
    for ip in sp.load_balancer_ips:
        e = f"{ip},{p}:{sp.port}"
        add(ipsets.LOAD_BALANCER, e)
        if local:
            add(ipsets.LOAD_BALANCER_LOCAL, e)
        if sp.load_balancer_source_ranges:
            add(ipsets.LOAD_BALANCER_FW, e)
            for cidr in sp.load_balancer_source_ranges:
                add(ipsets.LOAD_BALANCER_SOURCE_CIDR, f"{e},{cidr}")
        vs[VSKey(proto, ip, sp.port)] = (spec, external)
        if ip not in node_set:
            addrs.add(ip)
    if sp.node_port:
        if proto == "SCTP":
            for ip in node_addrs:
                add(ipsets.NODE_PORT_SCTP, f"{ip},{p}:{sp.node_port}")
                if local:
                    add(ipsets.NODE_PORT_LOCAL_SCTP, f"{ip},{p}:{sp.node_port}")
        else:
            add(ipsets.NODE_PORT_TCP if proto == "TCP" else ipsets.NODE_PORT_UDP, str(sp.node_port))
            if local:
                add(ipsets.NODE_PORT_LOCAL_TCP if proto == "TCP" else ipsets.NODE_PORT_LOCAL_UDP, str(sp.node_port))
        for ip in node_addrs:
            vs[VSKey(proto, ip, sp.node_port)] = (spec, external)
    if sp.health_check_node_port:
        add(ipsets.HEALTH_CHECK_NODE_PORT, str(sp.health_check_node_port))
    for ip in addrs:
        add(ipsets.IPVS_IPS, ip)
    return Contribution(vs, frozenset(addrs), {k: frozenset(v) for k, v in sets.items()})


def render_rules(nonempty: set[str], cluster_cidr: str | None) -> str:
    """kube-proxy's writeIptablesRules: one restore input for our nat and filter chains."""
    def c(name: str) -> str:
        return f'-m comment --comment "{ipsets.SETS[name].comment}"'

    nat = [f":{ch} - [0:0]" for ch in NAT_CHAINS]
    flt = [f":{ch} - [0:0]" for ch in FILTER_CHAINS]
    nat.append("-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN")
    # ipsetWithIptablesChain, in kube-proxy's order (the -LOCAL sets before their general set)
    for name, chain, match, target, proto in (
            (ipsets.LOOP_BACK, "KUBE-POSTROUTING", "dst,dst,src", "MASQUERADE", ""),
            (ipsets.LOAD_BALANCER, "KUBE-SERVICES", "dst,dst", "KUBE-LOAD-BALANCER", ""),
            (ipsets.LOAD_BALANCER_LOCAL, "KUBE-LOAD-BALANCER", "dst,dst", "RETURN", ""),
            (ipsets.NODE_PORT_LOCAL_TCP, "KUBE-NODE-PORT", "dst", "RETURN", "tcp"),
            (ipsets.NODE_PORT_TCP, "KUBE-NODE-PORT", "dst", "KUBE-MARK-MASQ", "tcp"),
            (ipsets.NODE_PORT_LOCAL_UDP, "KUBE-NODE-PORT", "dst", "RETURN", "udp"),
            (ipsets.NODE_PORT_UDP, "KUBE-NODE-PORT", "dst", "KUBE-MARK-MASQ", "udp"),
            (ipsets.NODE_PORT_LOCAL_SCTP, "KUBE-NODE-PORT", "dst,dst", "RETURN", "sctp"),
            (ipsets.NODE_PORT_SCTP, "KUBE-NODE-PORT", "dst,dst", "KUBE-MARK-MASQ", "sctp")):
        if name in nonempty:
            pm = f"-p {proto} " if proto else ""
            nat.append(f"-A {chain} {pm}{c(name)} -m set --match-set {name} {match} -j {target}")
    for name, chain, match, target in (
            (ipsets.LOAD_BALANCER_FW, "KUBE-PROXY-FIREWALL", "dst,dst", "KUBE-SOURCE-RANGES-FIREWALL"),
            (ipsets.LOAD_BALANCER_SOURCE_CIDR, "KUBE-SOURCE-RANGES-FIREWALL", "dst,dst,src", "RETURN")):
        if name in nonempty:
            flt.append(f"-A {chain} {c(name)} -m set --match-set {name} {match} -j {target}")
    if ipsets.CLUSTER_IP in nonempty:
        # written in iptables-save's own order (source match first), so the two read alike
        match = f"{c(ipsets.CLUSTER_IP)} -m set --match-set {ipsets.CLUSTER_IP}"
        if cluster_cidr:  # off-cluster sources to a ClusterIP are masqueraded
            nat.append(f"-A KUBE-SERVICES ! -s {cluster_cidr} {match} dst,dst -j KUBE-MARK-MASQ")
        else:  # node-originated traffic picks a VIP as source: masquerade that
            nat.append(f"-A KUBE-SERVICES {match} src,dst -j KUBE-MARK-MASQ")
    for name, masq in ((ipsets.EXTERNAL_IP, True), (ipsets.EXTERNAL_IP_LOCAL, False)):
        if name in nonempty:
            base = f"-A KUBE-SERVICES {c(name)} -m set --match-set {name} dst,dst"
            if masq:
                nat.append(f"{base} -j KUBE-MARK-MASQ")
            nat.append(f"{base} -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT")
            nat.append(f"{base} -m addrtype --dst-type LOCAL -j ACCEPT")
    nat.append("-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT")
    nat.append("-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ")
    flt.append("-A KUBE-SOURCE-RANGES-FIREWALL -j DROP")
    for name in (ipsets.CLUSTER_IP, ipsets.LOAD_BALANCER):  # acceptIPVSTraffic
        if name in nonempty:
            nat.append(f"-A KUBE-SERVICES -m set --match-set {name} dst,dst -j ACCEPT")
    flt.append('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" '
               f"-m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT")
    flt.append('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" '
               "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    flt.append(f"-A KUBE-NODE-PORT {c(ipsets.HEALTH_CHECK_NODE_PORT)} -m set --match-set "
               f"{ipsets.HEALTH_CHECK_NODE_PORT} dst -j ACCEPT")
    for name, match in ((ipsets.LOAD_BALANCER, "dst,dst"), (ipsets.CLUSTER_IP, "dst,dst"),
                        (ipsets.EXTERNAL_IP, "dst,dst"), (ipsets.EXTERNAL_IP_LOCAL, "dst,dst"),
                        (ipsets.HEALTH_CHECK_NODE_PORT, "dst")):
        flt.append(f"-A KUBE-IPVS-FILTER -m set --match-set {name} {match} -j RETURN")
    flt.append(f"-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set {ipsets.IPVS_IPS} dst -j REJECT")
    nat.append(f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN")
    nat.append(f"-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}")
    nat.append('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
               "-j MASQUERADE --random-fully")
    nat.append(f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}")
    return "\n".join(["*nat", *nat, "COMMIT", "*filter", *flt, "COMMIT"]) + "\n"


def _decrement(counter: Counter, keys) -> None:
    for k in keys:
        n = counter[k] - 1
        if n > 0:
            counter[k] = n
        else:
            del counter[k]


# -- the data plane -------------------------------------------------------------------------

@dataclass
class Plan:
    """The kernel changes one sync makes, in the order they are applied."""

    set_adds: dict[str, set[str]] = field(default_factory=dict)
    set_dels: dict[str, set[str]] = field(default_factory=dict)
    vs_add: dict[VSKey, VSSpec] = field(default_factory=dict)
    vs_set: dict[VSKey, VSSpec] = field(default_factory=dict)
    vs_del: list[VSKey] = field(default_factory=list)
    dest_add: list[tuple[VSKey, Dest]] = field(default_factory=list)
    dest_weight: list[tuple[VSKey, Dest, int]] = field(default_factory=list)  # 1 = back in, 0 = draining
    dest_del: list[tuple[VSKey, Dest]] = field(default_factory=list)
    bind: set[str] = field(default_factory=set)
    unbind: set[str] = field(default_factory=set)

    def count(self) -> int:
        return (sum(map(len, self.set_adds.values())) + sum(map(len, self.set_dels.values())) + len(self.vs_add)
                + len(self.vs_set) + len(self.vs_del) + len(self.dest_add) + len(self.dest_weight)
                + len(self.dest_del) + len(self.bind) + len(self.unbind))


class IpvsDataPlane:
    """Programs kube-proxy's ipvs layout; see the module docstring."""

    name = "ipvs"

    def __init__(self, backend: Backend, *, scheduler: str = "rr", cluster_cidr: str | None = "10.244.0.0/16",
                 exclude_cidrs: tuple[str, ...] = (), drain_interval: float = 5.0,
                 timeouts: tuple[int, int, int] = (0, 0, 0)):
        self.backend = backend
        self.scheduler = scheduler
        self.cluster_cidr = cluster_cidr
        self.exclude = [ipaddress.ip_network(c) for c in exclude_cidrs]
        self.drain_interval = drain_interval
        self.timeouts = timeouts
        self._ipvs = None  # IPVSClient, made on first sync (needs the kernel)
        self._dummy = None
        self._lock = asyncio.Lock()
        self._applied: dict[ServicePortName, ServiceEntry] = {}
        self._contrib: dict[ServicePortName, Contribution] = {}
        # what should be, aggregated over services (addresses and entries are shared by ports)
        self._want_vs: dict[VSKey, tuple[VSSpec, frozenset[Dest]]] = {}
        self._vs_owner: dict[VSKey, ServicePortName] = {}
        self._want_addrs: Counter[str] = Counter()
        self._want_sets: dict[str, Counter[str]] = {n: Counter() for n in ipsets.SETS}
        # our picture of the kernel
        self._k_vs: dict[VSKey, VSSpec] = {}
        self._k_dests: dict[VSKey, dict[Dest, int]] = {}
        self._k_addrs: set[str] = set()
        self._k_sets: dict[str, set[str]] = {n: set() for n in ipsets.SETS}
        self._draining: dict[tuple[VSKey, Dest], float] = {}
        self._rules_text = ""
        self._node_addrs: tuple[str, ...] = ()
        self._need_full = True
        self._initialized = False
        self._drainer: asyncio.Task | None = None
        self.last_plan = Plan()

    # -- desired-side bookkeeping -----------------------------------------------------
    def _update_contributions(self, desired: DesiredState, changed: set[ServicePortName],
                              touched_vs: set[VSKey], touched_addrs: set[str],
                              touched_sets: dict[str, set[str]]) -> None:
        for spn in sorted(changed):
            old = self._contrib.pop(spn, None)
            if old is not None:
                for key in old.vs:
                    if self._vs_owner.get(key) == spn:
                        del self._vs_owner[key]
                        del self._want_vs[key]
                    touched_vs.add(key)
                _decrement(self._want_addrs, old.addrs)
                touched_addrs.update(old.addrs)
                for name, entries in old.sets.items():
                    _decrement(self._want_sets[name], entries)
                    touched_sets.setdefault(name, set()).update(entries)
            entry = desired.services.get(spn)
            if entry is None:
                continue
            new = service_contribution(entry, self.scheduler, self._node_addrs)
            self._contrib[spn] = new
            for key, val in new.vs.items():
                if key not in self._vs_owner:  # two services claiming one address:port: first wins
                    self._vs_owner[key] = spn
                    self._want_vs[key] = val
                touched_vs.add(key)
            self._want_addrs.update(new.addrs)
            touched_addrs.update(new.addrs)
            for name, entries in new.sets.items():
                self._want_sets[name].update(entries)
                touched_sets.setdefault(name, set()).update(entries)
        self._applied = dict(desired.services)

    def _excluded(self, ip: str) -> bool:
        if not self.exclude:
            return False
        addr = ipaddress.ip_address(ip)
        return any(addr in net for net in self.exclude)

    # -- planning (pure given the two pictures) -----------------------------------------
    def plan(self, touched_vs: set[VSKey], touched_addrs: set[str], touched_sets: dict[str, set[str]],
             full: bool) -> Plan:
        pl = Plan()
        now = time.monotonic()
        for name, entries in touched_sets.items():
            want, have = self._want_sets[name], self._k_sets[name]
            for e in entries:
                if want[e] > 0 and e not in have:
                    pl.set_adds.setdefault(name, set()).add(e)
                elif want[e] <= 0 and e in have:
                    pl.set_dels.setdefault(name, set()).add(e)
        for ip in touched_addrs:
            if self._want_addrs[ip] > 0 and ip not in self._k_addrs:
                pl.bind.add(ip)
            elif self._want_addrs[ip] <= 0 and ip in self._k_addrs:
                pl.unbind.add(ip)
        for key in sorted(touched_vs):
            want = self._want_vs.get(key)
            have = self._k_vs.get(key)
            if want is None:
                if have is not None and not self._excluded(key.ip):
                    pl.vs_del.append(key)
                continue
            spec, dests = want
            if have is None:
                pl.vs_add[key] = spec
                pl.dest_add.extend((key, d) for d in sorted(dests))
                continue
            # the proc file shows persistence in jiffies: on full syncs re-assert persistent services
            if have.scheduler != spec.scheduler or (have.flags & FLAG_PERSISTENT) != (spec.flags & FLAG_PERSISTENT) \
                    or (full and spec.flags & FLAG_PERSISTENT) or (not full and have != spec):
                pl.vs_set[key] = spec
            kd = self._k_dests.get(key, {})
            for d in sorted(dests):
                w = kd.get(d)
                if w is None:
                    pl.dest_add.append((key, d))
                elif w != 1:
                    pl.dest_weight.append((key, d, 1))
                self._draining.pop((key, d), None)
            for d, w in sorted(kd.items()):
                if d in dests:
                    continue
                if key.protocol == "TCP":
                    if w != 0:
                        pl.dest_weight.append((key, d, 0))
                    self._draining.setdefault((key, d), now)
                else:
                    pl.dest_del.append((key, d))
        return pl

    # -- kernel I/O ---------------------------------------------------------------------
    async def _read_kernel(self) -> None:
        from kubesvc.proxy.dataplanes import ipvs_netlink as nl
        kvs, addrs, sets = await asyncio.gather(asyncio.to_thread(nl.read_ipvs),
                                                asyncio.to_thread(self._dummy.addresses), ipsets.save())
        self._k_vs = {k: v.spec for k, v in kvs.items()}
        self._k_dests = {k: {d: w for d, (w, _, _) in v.dests.items()} for k, v in kvs.items()}
        self._k_addrs = addrs
        self._k_sets = {n: set(sets.get(n, ())) for n in ipsets.SETS}

    def _init_kernel(self) -> None:
        from kubesvc.proxy.dataplanes import ipvs_netlink as nl
        for path, value in SYSCTLS.items():
            err = nl.set_sysctl(path, value)
            if err:
                log.warning("ipvs: cannot set sysctl %s", err)
        try:
            with open("/proc/sys/net/bridge/bridge-nf-call-iptables") as f:
                if f.read().strip() != "1":
                    log.info("ipvs: bridge-nf-call-iptables is off; pods on a bridge may not reach services")
        except OSError:
            pass
        self._ipvs = nl.IPVSClient()
        self._dummy = nl.DummyDevice(DUMMY_DEVICE)
        if any(self.timeouts):
            self._ipvs.run([self._ipvs.set_timeouts(*self.timeouts)])
        self._initialized = True

    def _apply_netlink(self, pl: Plan) -> list[str]:
        """IPVS and address changes, adds before deletes; returns errors (already worded)."""
        c = self._ipvs
        errors = []
        reqs = [c.add_service(k, s) for k, s in pl.vs_add.items()]
        reqs += [c.set_service(k, s) for k, s in pl.vs_set.items()]
        reqs += [c.add_dest(k, d) for k, d in pl.dest_add]
        reqs += [c.set_dest(k, d, w) for k, d, w in pl.dest_weight]
        errors += [f"{r.what}: {errno.errorcode.get(e, e)}" for r, e in c.run(reqs)]
        errors += [f"{r.what}: {errno.errorcode.get(e, e)}" for r, e in self._dummy.bind(sorted(pl.bind))]
        return errors

    def _apply_removals(self, pl: Plan) -> list[str]:
        c = self._ipvs
        errors = [f"{r.what}: {errno.errorcode.get(e, e)}" for r, e in self._dummy.unbind(sorted(pl.unbind))]
        reqs = [c.del_dest(k, d) for k, d in pl.dest_del] + [c.del_service(k) for k in pl.vs_del]
        # already gone (ESRCH: no such service, ENOENT: no such real server) is what we wanted
        errors += [f"{r.what}: {errno.errorcode.get(e, e)}"
                   for r, e in c.run(reqs, ignore=(errno.ESRCH, errno.ENOENT))]
        return errors

    def _commit_picture(self, pl: Plan) -> None:
        for name, es in pl.set_adds.items():
            self._k_sets[name] |= es
        for name, es in pl.set_dels.items():
            self._k_sets[name] -= es
        self._k_addrs |= pl.bind
        self._k_addrs -= pl.unbind
        for k, s in {**pl.vs_add, **pl.vs_set}.items():
            self._k_vs[k] = s
            self._k_dests.setdefault(k, {})
        for k, d in pl.dest_add:
            self._k_dests[k][d] = 1
        for k, d, w in pl.dest_weight:
            self._k_dests[k][d] = w
        for k, d in pl.dest_del:
            self._k_dests.get(k, {}).pop(d, None)
        for k in pl.vs_del:
            self._k_vs.pop(k, None)
            self._k_dests.pop(k, None)
            for dk in [dk for dk in self._draining if dk[0] == k]:
                del self._draining[dk]

    async def _iptables(self, text: str, extra_nat: list[str], extra_filter: list[str]) -> None:
        for table, extra in (("nat", extra_nat), ("filter", extra_filter)):
            if not extra:
                continue
            # declarations right after the table header, deletions just before its COMMIT
            decl = "".join(f"{line}\n" for line in extra if line.startswith(":"))
            dels = "".join(f"{line}\n" for line in extra if line.startswith("-X"))
            head = text.index(f"*{table}\n") + len(table) + 2
            text = text[:head] + decl + text[head:]
            end = text.index("COMMIT\n", head)
            text = text[:end] + dels + text[end:]
        rc, err = await self.backend.restore_noflush(text)
        if rc != 0:
            raise RuntimeError(f"{self.backend.restore} failed ({rc}): {err[:2000]}")

    async def _leftovers(self) -> tuple[list[str], list[str]]:
        """Declarations (= flushes) and deletions of the iptables mode's chains, if present."""
        nat, flt = [], []
        for table, out in (("nat", nat), ("filter", flt)):
            proc = await asyncio.create_subprocess_exec(self.backend.save, "-t", table,
                                                        stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.DEVNULL)
            text = (await proc.communicate())[0].decode()
            chains = [line[1:].split()[0] for line in text.splitlines() if line.startswith(":KUBE-")]
            per_service = [ch for ch in chains if ch.startswith(IPTABLES_MODE_LEFTOVERS)]
            shared = [ch for ch in chains if ch in IPTABLES_MODE_SHARED[table]]
            # these lines go after our own declarations: declare (flush), then delete per-service ones
            out += [f":{ch} - [0:0]" for ch in per_service + shared]
            out += [f"-X {ch}" for ch in per_service]
            if table == "nat":
                out += [f"-X {ch}" for ch in shared]
        return nat, flt

    # -- the duty ---------------------------------------------------------------------------
    async def sync(self, desired: DesiredState, *, full: bool = False) -> SyncResult:
        async with self._lock:
            return await self._sync(desired, full)

    async def _sync(self, desired: DesiredState, full: bool) -> SyncResult:
        from kubesvc.proxy.dataplanes import ipvs_netlink as nl
        t0 = time.perf_counter()
        full = full or self._need_full
        if not self._initialized:
            await asyncio.to_thread(self._init_kernel)
        changed = changed_services(desired, self._applied, full)
        if full:
            addrs = tuple(await asyncio.to_thread(nl.node_addresses))
            if addrs != self._node_addrs:
                self._node_addrs = addrs
                changed |= {spn for spn, e in desired.services.items() if e.port.node_port}
                changed |= {spn for spn, e in self._applied.items() if e.port.node_port}
        touched_vs: set[VSKey] = set()
        touched_addrs: set[str] = set()
        touched_sets: dict[str, set[str]] = {}
        self._update_contributions(desired, changed, touched_vs, touched_addrs, touched_sets)
        other = 0.0
        if full:
            t_read = time.perf_counter()
            await self._read_kernel()
            other = time.perf_counter() - t_read
            touched_vs = set(self._want_vs) | set(self._k_vs)
            touched_addrs = set(self._want_addrs) | self._k_addrs
            touched_sets = {n: set(self._want_sets[n]) | self._k_sets[n] for n in ipsets.SETS}
            for key, dests in self._k_dests.items():  # weight-0 leftovers of a previous run keep draining
                want = self._want_vs.get(key)
                for d, w in dests.items():
                    if w == 0 and (want is None or d not in want[1]) and key.protocol == "TCP":
                        self._draining.setdefault((key, d), time.monotonic())
        pl = self.plan(touched_vs, touched_addrs, touched_sets, full)
        nonempty = {n for n, cnt in self._want_sets.items() if cnt} if (full or touched_sets) else None
        t1 = time.perf_counter()
        errors: list[str] = []
        try:
            # sets first, in one `ipset restore` as kube-proxy's syncIPSetEntries (rules refer to them),
            # then virtual servers, then the addresses that route into them
            await ipsets.restore(ipsets.render_restore(pl.set_adds, pl.set_dels, create=full))
            errors += await asyncio.to_thread(self._apply_netlink, pl)
            if nonempty is not None:
                text = render_rules(nonempty, self.cluster_cidr)
                if full or text != self._rules_text:
                    extra = await self._leftovers() if not self._rules_text else ([], [])
                    await self._iptables(text, *extra)
                    self._rules_text = text
            if full:
                await ensure_jumps(self.backend, JUMPS)
            errors += await asyncio.to_thread(self._apply_removals, pl)
        except Exception:
            self._need_full = True
            raise
        self._commit_picture(pl)
        if full:  # the proc file cannot show every flag: from now on trust what we set
            for key, (spec, _) in self._want_vs.items():
                if key in self._k_vs:
                    self._k_vs[key] = spec
        self.last_plan = pl
        if errors:
            self._need_full = True  # our picture is wrong somewhere: re-read the kernel next time
            raise RuntimeError(f"ipvs: {len(errors)} kernel change(s) failed: " + "; ".join(errors[:5]))
        self._need_full = False
        t2 = time.perf_counter()
        if self._draining:
            await self._reap_drained()
            self._start_drainer()
        return SyncResult(full=full, services_written=len(changed), rules=self.rule_counts(),
                          compute_seconds=t1 - t0 - other, apply_seconds=t2 - t1,
                          other_seconds=other + time.perf_counter() - t2)

    # -- graceful real-server removal ---------------------------------------------------
    async def _reap_drained(self) -> None:
        """Delete weight-0 real servers that no longer carry connections."""
        from kubesvc.proxy.dataplanes import ipvs_netlink as nl
        kvs = await asyncio.to_thread(nl.read_ipvs)
        done = []
        for (key, d) in list(self._draining):
            vs = kvs.get(key)
            if vs is None or d not in vs.dests:
                done.append((key, d))
                continue
            weight, active, inactive = vs.dests[d]
            if weight == 0 and active + inactive == 0:
                done.append((key, d))
        if not done:
            return
        reqs = [self._ipvs.del_dest(k, d) for k, d in done]
        await asyncio.to_thread(self._ipvs.run, reqs, (errno.ESRCH, errno.ENOENT))
        for k, d in done:
            self._draining.pop((k, d), None)
            self._k_dests.get(k, {}).pop(d, None)
        log.info("ipvs: deleted %d drained real server(s)", len(done))

    def _start_drainer(self) -> None:
        if self._drainer is not None and not self._drainer.done():
            return

        async def loop() -> None:
            while self._draining:
                await asyncio.sleep(self.drain_interval)
                async with self._lock:
                    try:
                        await self._reap_drained()
                    except Exception as err:  # next round retries
                        log.warning("ipvs: checking draining real servers failed: %s", err)
        self._drainer = asyncio.get_running_loop().create_task(loop())

    def rule_counts(self) -> dict[str, int]:
        lines = [line for line in self._rules_text.splitlines() if line.startswith("-A")]
        nat = self._rules_text.split("*filter")[0] if self._rules_text else ""
        n_nat = sum(1 for line in nat.splitlines() if line.startswith("-A"))
        return {"nat": n_nat, "filter": len(lines) - n_nat, "ipvs": len(self._k_vs)}

    async def close(self) -> None:
        """Stop checking draining servers; everything in the kernel stays so traffic goes on."""
        if self._drainer is not None:
            self._drainer.cancel()
        if self._ipvs is not None:
            self._ipvs.close()
        if self._dummy is not None:
            self._dummy.close()
