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
import gc
import ipaddress
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

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

# -- what one service port asks of the kernel (pure) -------------------------------------

@dataclass(frozen=True, slots=True)
class Contribution:
    """The virtual servers, kube-ipvs0 addresses and set entries one service port needs.

    Set entries are (set name, entry) pairs in one tuple: aggregating them is one C-level
    Counter update per service, where a dict of per-set frozensets cost a third of a
    10,000-service plan. `out_filter` holds the (LB IP, protocol, port) triples the node
    itself may not reach (KUBE-IPVS-OUT-FILTER)."""

    vs: dict[VSKey, tuple[VSSpec, frozenset[Dest]]] = field(default_factory=dict)
    addrs: frozenset[str] = frozenset()
    entries: tuple[tuple[str, str], ...] = ()
    out_filter: tuple[tuple[str, str, int], ...] = ()

    @property
    def sets(self) -> dict[str, frozenset[str]]:
        """The entries grouped by set (for reading and tests)."""
        out: dict[str, set[str]] = {}
        for name, e in self.entries:
            out.setdefault(name, set()).add(e)
        return {k: frozenset(v) for k, v in out.items()}


@lru_cache(maxsize=4096)
def _spec(scheduler: str, flags: int, timeout: int) -> VSSpec:
    return VSSpec(scheduler, flags, timeout)


@lru_cache(maxsize=4096)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def _set_net(cidr: str) -> str:
    """A source range as `ipset save` prints it (network address, no /32), so that a full
    sync's comparison with the kernel's sets finds it unchanged."""
    net = _network(cidr)
    if net is None:
        return cidr
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _covers(cidr: str, ip: str | None) -> bool:
    net = _network(cidr)
    if net is None or not ip:
        return False
    try:
        return ipaddress.ip_address(ip) in net
    except ValueError:
        return False


def _dests(endpoints) -> frozenset[Dest]:
    return frozenset([Dest(e.ip, e.port) for e in endpoints])


def service_contribution(entry: ServiceEntry, scheduler: str = "rr",
                         node_addrs: tuple[str, ...] = (), node_ip: str | None = None) -> Contribution:
    """kube-proxy's syncProxyRules body for one service port.

    `node_addrs` are the addresses NodePorts answer on; `node_ip` is the node's primary
    address, which decides whether loadBalancerSourceRanges let the node itself reach
    the LB IP (kube-proxy's allowFromNode)."""
    sp = entry.port
    proto, p, port = sp.protocol.upper(), sp.proto, sp.port
    flags = (FLAG_PERSISTENT if sp.affinity_timeout else 0) | (FLAG_SOURCE_HASH if scheduler == "mh" else 0)
    spec = _spec(scheduler, flags, sp.affinity_timeout)
    cluster_eps, external_eps = entry.cluster_endpoints, entry.external_endpoints
    internal = _dests(cluster_eps)
    external = internal if external_eps is cluster_eps else _dests(external_eps)
    local = sp.external_policy_local
    vs: dict[VSKey, tuple[VSSpec, frozenset[Dest]]] = {}
    addrs: list[str] = []
    entries: list[tuple[str, str]] = []
    out: list[tuple[str, str, int]] = []
    add = entries.append

    for ep in entry.endpoints.all:  # hairpin: a local endpoint reaching itself through the service
        if ep.is_local:
            add((ipsets.LOOP_BACK, f"{ep.ip},{p}:{ep.port},{ep.ip}"))
    cip = sp.cluster_ip
    if cip and cip != "None":
        add((ipsets.CLUSTER_IP, f"{cip},{p}:{port}"))
        vs[VSKey(proto, cip, port)] = (spec, internal)
        addrs.append(cip)
    for ip in sp.external_ips:
        add((ipsets.EXTERNAL_IP_LOCAL if local else ipsets.EXTERNAL_IP, f"{ip},{p}:{port}"))
        vs[VSKey(proto, ip, port)] = (spec, external)
        if ip not in node_addrs:  # never move a node's own address onto kube-ipvs0
            addrs.append(ip)
    for ip in sp.load_balancer_ips:
        e = f"{ip},{p}:{port}"
        add((ipsets.LOAD_BALANCER, e))
        if local:
            add((ipsets.LOAD_BALANCER_LOCAL, e))
        if sp.load_balancer_source_ranges:
            add((ipsets.LOAD_BALANCER_FW, e))
            allow_from_node = False
            for cidr in sp.load_balancer_source_ranges:
                add((ipsets.LOAD_BALANCER_SOURCE_CIDR, f"{e},{_set_net(cidr)}"))
                allow_from_node = allow_from_node or _covers(cidr, node_ip)
            if allow_from_node:
                # the node reaches the LB IP with the LB IP as source (it is on kube-ipvs0)
                add((ipsets.LOAD_BALANCER_SOURCE_IP, f"{e},{ip}"))
            else:  # the source ranges leave the node out: its own connections are dropped
                out.append((ip, p, port))
        vs[VSKey(proto, ip, port)] = (spec, external)
        if ip not in node_addrs:
            addrs.append(ip)
    if sp.node_port:
        if proto == "SCTP":
            for ip in node_addrs:
                add((ipsets.NODE_PORT_SCTP, f"{ip},{p}:{sp.node_port}"))
                if local:
                    add((ipsets.NODE_PORT_LOCAL_SCTP, f"{ip},{p}:{sp.node_port}"))
        else:
            add((ipsets.NODE_PORT_TCP if proto == "TCP" else ipsets.NODE_PORT_UDP, str(sp.node_port)))
            if local:
                add((ipsets.NODE_PORT_LOCAL_TCP if proto == "TCP" else ipsets.NODE_PORT_LOCAL_UDP,
                     str(sp.node_port)))
        for ip in node_addrs:
            vs[VSKey(proto, ip, sp.node_port)] = (spec, external)
    if sp.health_check_node_port:
        add((ipsets.HEALTH_CHECK_NODE_PORT, str(sp.health_check_node_port)))
    bound = frozenset(addrs)
    entries.extend((ipsets.IPVS_IPS, ip) for ip in bound)
    return Contribution(vs, bound, tuple(entries), tuple(out))


def render_rules(nonempty: set[str], cluster_cidr: str | None,
                 out_filter: list[tuple[str, str, int]] | tuple = ()) -> str:
    """kube-proxy's writeIptablesRules: one restore input for our nat and filter chains.

    `out_filter` lists the (LB IP, protocol, port) the node may not reach itself."""
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
            (ipsets.LOAD_BALANCER_SOURCE_CIDR, "KUBE-SOURCE-RANGES-FIREWALL", "dst,dst,src", "RETURN"),
            (ipsets.LOAD_BALANCER_SOURCE_IP, "KUBE-SOURCE-RANGES-FIREWALL", "dst,dst,src", "RETURN")):
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
    # kube-proxy 1.30+ (kubernetes#119656), whatever --ipvs-strict-arp says: a connection the
    # node opens to an LB IP leaves with that IP as source (it is bound to kube-ipvs0) and
    # IPVS takes it in OUTPUT, before any source-range check could see it; when the ranges
    # do not cover the node, drop what IPVS scheduled for that virtual server.
    for ip, proto, port in out_filter:
        flt.append(f"-A KUBE-IPVS-OUT-FILTER -s {ip} -m ipvs --vaddr {ip} --vproto {proto} --vport {port} -j DROP")
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
            del counter[k]  # a Counter holds only what is wanted: its keys are the desired set


def _primary_ip(node_ips: tuple[str, ...]) -> str | None:
    """The node IP kube-proxy's allowFromNode checks: the first IPv4 one (this plane is IPv4)."""
    return next((ip for ip in node_ips if ":" not in ip), None)


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


def _group(pairs) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, e in pairs:
        s = out.get(name)
        if s is None:
            s = out[name] = set()
        s.add(e)
    return out


class IpvsDataPlane:
    """Programs kube-proxy's ipvs layout; see the module docstring."""

    name = "ipvs"

    def __init__(self, backend: Backend, *, scheduler: str = "rr", cluster_cidr: str | None = "10.244.0.0/16",
                 exclude_cidrs: tuple[str, ...] = (), drain_interval: float = 5.0,
                 timeouts: tuple[int, int, int] = (0, 0, 0), cleanup_leftovers: bool = True):
        self.backend = backend
        self.scheduler = scheduler
        self.cluster_cidr = cluster_cidr
        self.exclude = [ipaddress.ip_network(c) for c in exclude_cidrs]
        self.drain_interval = drain_interval
        self.timeouts = timeouts
        self.cleanup_leftovers = cleanup_leftovers  # remove the other modes' rules on the first sync
        self._ipvs = None  # IPVSClient, made on first sync (needs the kernel)
        self._dummy = None
        self._lock = asyncio.Lock()
        self._applied: dict[ServicePortName, ServiceEntry] = {}
        self._contrib: dict[ServicePortName, Contribution] = {}
        # what should be, aggregated over services (addresses and entries are shared by ports);
        # the Counters hold only positive counts, so their keys are exactly what is wanted
        self._want_vs: dict[VSKey, tuple[VSSpec, frozenset[Dest]]] = {}
        self._vs_owner: dict[VSKey, ServicePortName] = {}
        self._vs_contenders: dict[VSKey, list[ServicePortName]] = {}  # claimants waiting for a contested key
        self._want_addrs: Counter[str] = Counter()
        self._want_entries: Counter[tuple[str, str]] = Counter()  # (set, entry)
        self._set_refs: Counter[str] = Counter()  # entries per set, for the rules that need a non-empty set
        self._want_out: Counter[tuple[str, str, int]] = Counter()
        # our picture of the kernel
        self._k_vs: dict[VSKey, VSSpec] = {}
        self._k_dests: dict[VSKey, dict[Dest, int]] = {}
        self._k_addrs: set[str] = set()
        self._k_entries: set[tuple[str, str]] = set()
        self._draining: dict[tuple[VSKey, Dest], float] = {}
        self._rules_text = ""
        self._node_addrs: tuple[str, ...] = ()
        self._node_ip: str | None = None
        self._need_full = True
        self._initialized = False
        self._drainer: asyncio.Task | None = None
        self.last_plan = Plan()
        self.last_reap_keys = 0  # virtual servers the last drain check listed (benchmarks, tests)
        self._warned_out_filter = False

    # -- desired-side bookkeeping -----------------------------------------------------
    def _update_contributions(self, desired: DesiredState, changed: set[ServicePortName],
                              touched_vs: set[VSKey], touched_addrs: set[str],
                              touched_entries: set[tuple[str, str]]) -> None:
        want_vs, owner, contrib = self._want_vs, self._vs_owner, self._contrib
        services = desired.services
        for spn in sorted(changed):
            entry = services.get(spn)
            new = service_contribution(entry, self.scheduler, self._node_addrs, self._node_ip) if entry else None
            new_vs = new.vs if new is not None else {}
            old = contrib.pop(spn, None)
            if old is not None:
                for key in old.vs:
                    touched_vs.add(key)
                    if owner.get(key) != spn:
                        self._drop_contender(key, spn)
                    elif key not in new_vs:
                        del owner[key]
                        del want_vs[key]
                        self._promote(key)
                _decrement(self._want_addrs, old.addrs)
                touched_addrs.update(old.addrs)
                _decrement(self._want_entries, old.entries)
                _decrement(self._set_refs, [name for name, _ in old.entries])
                touched_entries.update(old.entries)
                _decrement(self._want_out, old.out_filter)
            if new is None:
                continue
            contrib[spn] = new
            for key, val in new_vs.items():
                holder = owner.get(key)
                if holder is None or holder == spn:
                    owner[key] = spn
                    want_vs[key] = val
                else:  # two services claiming one address:port: the first keeps it, the next waits
                    self._vs_contenders.setdefault(key, []).append(spn)
                touched_vs.add(key)
            self._want_addrs.update(new.addrs)
            touched_addrs.update(new.addrs)
            self._want_entries.update(new.entries)
            self._set_refs.update([name for name, _ in new.entries])
            touched_entries.update(new.entries)
            if new.out_filter:
                self._want_out.update(new.out_filter)
        self._applied = dict(services)

    def _drop_contender(self, key: VSKey, spn: ServicePortName) -> None:
        waiting = self._vs_contenders.get(key)
        if waiting and spn in waiting:
            waiting.remove(spn)
            if not waiting:
                del self._vs_contenders[key]

    def _promote(self, key: VSKey) -> None:
        """The owner of a contested virtual server let go: the next claimant takes it."""
        waiting = self._vs_contenders.get(key)
        while waiting:
            spn = waiting.pop(0)
            c = self._contrib.get(spn)
            if c is not None and key in c.vs:
                self._vs_owner[key] = spn
                self._want_vs[key] = c.vs[key]
                break
        if not waiting:
            self._vs_contenders.pop(key, None)

    def _excluded(self, ip: str) -> bool:
        if not self.exclude:
            return False
        addr = ipaddress.ip_address(ip)
        return any(addr in net for net in self.exclude)

    # -- planning (pure given the two pictures) -----------------------------------------
    def plan(self, touched_vs: set[VSKey], touched_addrs: set[str], touched_entries: set[tuple[str, str]],
             full: bool) -> Plan:
        """The difference between what is wanted and our picture of the kernel.

        A full plan compares everything with set operations (C loops); a partial one only
        what the changed services touched."""
        pl = Plan()
        want_e, have_e = self._want_entries, self._k_entries
        want_a, have_a = self._want_addrs, self._k_addrs
        want_vs, have_vs = self._want_vs, self._k_vs
        if full:
            e_add, e_del = want_e.keys() - have_e, have_e - want_e.keys()
            pl.bind, pl.unbind = want_a.keys() - have_a, have_a - want_a.keys()
            vs_new = want_vs.keys() - have_vs.keys()
            vs_gone = have_vs.keys() - want_vs.keys()
            vs_both = want_vs.keys() & have_vs.keys()
        else:
            e_add = {t for t in touched_entries if t in want_e and t not in have_e}
            e_del = {t for t in touched_entries if t not in want_e and t in have_e}
            pl.bind = {ip for ip in touched_addrs if ip in want_a and ip not in have_a}
            pl.unbind = {ip for ip in touched_addrs if ip not in want_a and ip in have_a}
            vs_new = {k for k in touched_vs if k in want_vs and k not in have_vs}
            vs_gone = {k for k in touched_vs if k not in want_vs and k in have_vs}
            vs_both = {k for k in touched_vs if k in want_vs and k in have_vs}
        pl.set_adds, pl.set_dels = _group(e_add), _group(e_del)
        for key in sorted(vs_new):
            spec, dests = want_vs[key]
            pl.vs_add[key] = spec
            pl.dest_add.extend((key, d) for d in sorted(dests))
        pl.vs_del = [k for k in sorted(vs_gone) if not self._excluded(k.ip)]
        now = time.monotonic()
        k_dests, draining = self._k_dests, self._draining
        for key in sorted(vs_both):
            spec, dests = want_vs[key]
            have = have_vs[key]
            # the proc file shows persistence in jiffies: on full syncs re-assert persistent services
            if have.scheduler != spec.scheduler or (have.flags & FLAG_PERSISTENT) != (spec.flags & FLAG_PERSISTENT) \
                    or (full and spec.flags & FLAG_PERSISTENT) or (not full and have != spec):
                pl.vs_set[key] = spec
            kd = k_dests.get(key) or {}
            if kd.keys() == dests and all(w == 1 for w in kd.values()):
                continue  # the common case on a full sync: nothing to do for its real servers
            for d in sorted(dests):
                w = kd.get(d)
                if w is None:
                    pl.dest_add.append((key, d))
                elif w != 1:
                    pl.dest_weight.append((key, d, 1))
                draining.pop((key, d), None)
            for d, w in sorted(kd.items()):
                if d in dests:
                    continue
                if key.protocol == "TCP":
                    if w != 0:
                        pl.dest_weight.append((key, d, 0))
                    draining.setdefault((key, d), now)
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
        self._k_entries = {(n, e) for n, es in sets.items() if n in ipsets.SETS for e in es}

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
            self._k_entries.update((name, e) for e in es)
        for name, es in pl.set_dels.items():
            self._k_entries.difference_update((name, e) for e in es)
        self._k_addrs |= pl.bind
        self._k_addrs -= pl.unbind
        k_vs, k_dests = self._k_vs, self._k_dests
        for k, s in pl.vs_add.items():
            k_vs[k] = s
            k_dests.setdefault(k, {})
        k_vs.update(pl.vs_set)
        for k, d in pl.dest_add:
            k_dests[k][d] = 1
        for k, d, w in pl.dest_weight:
            k_dests[k][d] = w
        for k, d in pl.dest_del:
            k_dests.get(k, {}).pop(d, None)
        if pl.vs_del:
            gone = set(pl.vs_del)
            for k in gone:
                k_vs.pop(k, None)
                k_dests.pop(k, None)
            for dk in [dk for dk in self._draining if dk[0] in gone]:
                del self._draining[dk]

    async def _iptables(self, text: str) -> None:
        rc, err = await self.backend.restore_noflush(text)
        if rc != 0:
            raise RuntimeError(f"{self.backend.restore} failed ({rc}): {err[:2000]}")

    def rules_text(self, out_filter: bool = True) -> str:
        """Our nat and filter rules for what is wanted now (render_rules' input)."""
        return render_rules({n for n, c in self._set_refs.items() if c > 0}, self.cluster_cidr,
                            sorted(self._want_out) if out_filter else ())

    async def _write_rules(self, text: str) -> None:
        """Restore our rules. KUBE-IPVS-OUT-FILTER needs the kernel's xt_ipvs match: where it
        is missing, one LB service with source ranges would otherwise keep every rule from
        being written, so the rules go without it, once said in the log."""
        try:
            await self._iptables(text)
        except RuntimeError as err:
            if not self._want_out:
                raise
            bare = self.rules_text(out_filter=False)
            await self._iptables(bare)  # raises if the failure was not the ipvs match
            if not self._warned_out_filter:
                log.warning("ipvs: KUBE-IPVS-OUT-FILTER not written (is the xt_ipvs module missing?); the node "
                            "itself can reach LB IPs whose loadBalancerSourceRanges exclude it: %s", err)
                self._warned_out_filter = True
        self._rules_text = text  # what we asked for: the same text next time is not retried

    # -- the duty ---------------------------------------------------------------------------
    async def sync(self, desired: DesiredState, *, full: bool = False) -> SyncResult:
        async with self._lock:
            # a big sync allocates hundreds of thousands of small objects, all kept: the cyclic
            # GC would rescan the growing heap again and again for nothing (as in iptables.py)
            gc_was_enabled = gc.isenabled()
            gc.disable()
            try:
                return await self._sync(desired, full)
            finally:
                if gc_was_enabled:
                    gc.enable()

    async def _sync(self, desired: DesiredState, full: bool) -> SyncResult:
        from kubesvc.proxy.dataplanes import ipvs_netlink as nl
        t0 = time.perf_counter()
        full = full or self._need_full
        if not self._initialized:
            await asyncio.to_thread(self._init_kernel)
        t_start = time.perf_counter()
        changed = changed_services(desired, self._applied, full)
        node_ip = _primary_ip(desired.node_ips)
        if node_ip != self._node_ip:  # allowFromNode of every service with source ranges may flip
            self._node_ip = node_ip
            changed |= {spn for spn, e in desired.services.items() if e.port.load_balancer_source_ranges}
            changed |= {spn for spn, e in self._applied.items() if e.port.load_balancer_source_ranges}
        other = 0.0
        if full:
            t_read = time.perf_counter()
            addrs = tuple(await asyncio.to_thread(nl.node_addresses))
            other += time.perf_counter() - t_read
            if addrs != self._node_addrs:
                self._node_addrs = addrs
                changed |= {spn for spn, e in desired.services.items() if e.port.node_port}
                changed |= {spn for spn, e in self._applied.items() if e.port.node_port}
        touched_vs: set[VSKey] = set()
        touched_addrs: set[str] = set()
        touched_entries: set[tuple[str, str]] = set()
        self._update_contributions(desired, changed, touched_vs, touched_addrs, touched_entries)
        if full:
            t_read = time.perf_counter()
            await self._read_kernel()
            other += time.perf_counter() - t_read
            now = time.monotonic()
            for key, dests in self._k_dests.items():  # weight-0 leftovers of a previous run keep draining
                if key.protocol != "TCP" or 0 not in dests.values():
                    continue
                want = self._want_vs.get(key)
                for d, w in dests.items():
                    if w == 0 and (want is None or d not in want[1]):
                        self._draining.setdefault((key, d), now)
        pl = self.plan(touched_vs, touched_addrs, touched_entries, full)
        text = self.rules_text()
        t1 = time.perf_counter()
        errors: list[str] = []
        try:
            if full and self.cleanup_leftovers:
                # the iptables/userspace modes' chains and jumps (their DNATs and REJECTs would
                # act before IPVS sees the traffic); once per process
                from kubesvc.proxy.dataplanes.cleanup import remove_leftovers
                await remove_leftovers(self.backend, "ipvs")
                self.cleanup_leftovers = False
            # sets first, in one `ipset restore` as kube-proxy's syncIPSetEntries (rules refer to them),
            # then virtual servers, then the addresses that route into them
            await ipsets.restore(ipsets.render_restore(pl.set_adds, pl.set_dels, create=full))
            errors += await asyncio.to_thread(self._apply_netlink, pl)
            if full or text != self._rules_text:
                await self._write_rules(text)
            if full:
                await ensure_jumps(self.backend, JUMPS)
            errors += await asyncio.to_thread(self._apply_removals, pl)
        except Exception:
            self._need_full = True
            raise
        self._commit_picture(pl)
        if full:  # the proc file cannot show every flag: from now on trust what we set
            k_vs = self._k_vs
            for key, (spec, _) in self._want_vs.items():
                if key in k_vs:
                    k_vs[key] = spec
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
                          compute_seconds=t1 - t_start - other, apply_seconds=t2 - t1,
                          other_seconds=other + (t_start - t0) + time.perf_counter() - t2)

    # -- graceful real-server removal ---------------------------------------------------
    async def _reap_drained(self) -> None:
        """Delete weight-0 real servers that no longer carry connections.

        Only the virtual servers that have a draining real server are listed (one
        GET_DEST dump each), not the whole IPVS table."""
        keys = sorted({key for key, _ in self._draining})
        self.last_reap_keys = len(keys)
        now = await asyncio.to_thread(self._ipvs.get_dests, keys)
        done = []
        for (key, d) in list(self._draining):
            dests = now.get(key)
            if dests is None or d not in dests:
                done.append((key, d))
                continue
            weight, active, inactive = dests[d]
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
