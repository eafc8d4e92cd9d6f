"""The iptables data plane: kube-proxy's rule layout, applied with iptables-restore.

Layout and names follow kube-proxy (pkg/proxy/iptables/proxier.go) so that what
people know holds here: KUBE-SERVICES → KUBE-SVC-<hash> (cluster policy),
KUBE-SVL-<hash> (local policy), KUBE-EXT-<hash> (external destinations),
KUBE-FW-<hash> (loadBalancerSourceRanges) → KUBE-SEP-<hash> (one endpoint, DNAT);
KUBE-NODEPORTS; KUBE-MARK-MASQ / KUBE-POSTROUTING with mark 0x4000; REJECT in the
filter table for services without endpoints.

Every change is one `iptables-restore --noflush` transaction. A *full* sync
declares (= flushes) every kube chain and writes all of it; a *partial* sync
rewrites only the chains of changed services and edits the shared chains
(KUBE-SERVICES, KUBE-NODEPORTS, ...) by rule number, because we know exactly what
we put there: that keeps a one-service change small however many services exist,
which matters on iptables-nft where each written rule is costly. Rules are
written in a canonical (sorted) order, so a partial sync leaves exactly what a
full sync would, and a restarted proxy converges to the same `iptables-save`.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field

from kubesvc.proxy.dataplanes.base import SyncResult, changed_services
from kubesvc.proxy.model import (DesiredState, Endpoint, ServiceEntry, ServicePortName,
                                 endpoint_hash, port_proto_hash)

log = logging.getLogger(__name__)

MASQ_MARK = "0x4000"
NODEPORTS_LAST = ('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must '
                  'be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
# kube-proxy's largeClusterEndpointsThreshold: beyond it, per-endpoint rules lose their comments
LARGE_CLUSTER_ENDPOINTS = 1000
# Above this many services a periodic repair on iptables-nft first checks for drift
# (a listing of chain names) and rewrites everything only when something is off.
NFT_REPAIR_CHECK = 1000
# iptables-nft-restore (1.8.x) keeps the chain names a transaction mentions in a
# sorted linked list to fetch only those chains, one ordered insert per command:
# quadratic in the chains of a full sync (10,000 services: 26 s of CPU). A command
# naming no chain switches that off and fetches every chain instead; `-L -n` is the
# one without side effects (it lists the table to a stdout we discard before the
# changes apply). With it, 10,000 services restore in ~2 s into an empty table.
WHOLE_TABLE_CACHE = "-L -n"
PER_SERVICE_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")

# Shared chains, per table, in the order they are declared; their fixed rules.
NAT_CHAINS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")
FILTER_CHAINS = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-FORWARD",
                 "KUBE-PROXY-FIREWALL")
STATIC_RULES: dict[tuple[str, str], list[str]] = {
    ("nat", "KUBE-MARK-MASQ"): [f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}"],
    ("nat", "KUBE-POSTROUTING"): [
        f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
    ],
    ("filter", "KUBE-FORWARD"): [
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" '
        f"-m mark --mark {MASQ_MARK}/{MASQ_MARK} -j ACCEPT",
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ],
}

# Jumps from the built-in chains, first in them (kube-proxy's EnsureRule); see missing_jumps.
Jump = tuple[str, str, str]  # (table, built-in chain, rule spec)
JUMPS: list[Jump] = [
    ("filter", "INPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "INPUT", '-m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS'),
    ("filter", "INPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "FORWARD", '-m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("filter", "FORWARD", '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES'),
    ("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL'),
    ("filter", "OUTPUT", '-m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "OUTPUT", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "PREROUTING", '-m comment --comment "kubernetes service portals" -j KUBE-SERVICES'),
    ("nat", "POSTROUTING", '-m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'),
]


# -- backend (legacy or nft) ------------------------------------------------

@dataclass(frozen=True)
class Backend:
    """Which iptables binaries to run: xtables-legacy or xtables-nft."""

    name: str  # "legacy" or "nft"

    @property
    def iptables(self) -> str:
        return f"iptables-{self.name}"

    @property
    def save(self) -> str:
        return f"iptables-{self.name}-save"

    @property
    def restore(self) -> str:
        return f"iptables-{self.name}-restore"

    async def restore_noflush(self, text: str) -> tuple[int, str]:
        """Feed `text` to `iptables-restore -w 5 --noflush` (one transaction; chains not named
        are left alone); returns (exit status, its stderr) for the caller to judge."""
        proc = await asyncio.create_subprocess_exec(
            self.restore, "-w", "5", "--noflush",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate(text.encode())
        return proc.returncode, err.decode().strip()


HINT_CHAINS = ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY")


def _run(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def detect_backend(choice: str = "auto") -> tuple[Backend, str]:
    """Pick legacy or nft the way kube-proxy's iptables-wrapper does; returns (backend, why).

    Follow what the system already uses, never both: a KUBE-IPTABLES-HINT (or
    kubelet canary) chain in one backend's mangle table decides; otherwise the
    backend holding more rules; otherwise what plain `iptables` is on this system.
    """
    if choice in ("legacy", "nft"):
        return Backend(choice), f"--iptables-backend={choice}"
    for name in ("legacy", "nft"):
        if shutil.which(f"iptables-{name}-save") is None:
            continue
        out = _run([f"iptables-{name}-save", "-t", "mangle"])
        if any(f":{c} " in out for c in HINT_CHAINS):
            return Backend(name), f"{name} mangle table has a {'/'.join(HINT_CHAINS)} chain"
    counts = {}
    for name in ("legacy", "nft"):
        if shutil.which(f"iptables-{name}-save"):
            counts[name] = sum(1 for line in _run([f"iptables-{name}-save"]).splitlines()
                               if line.startswith("-"))
    if counts.get("legacy", 0) > counts.get("nft", 0):
        return Backend("legacy"), f"iptables-legacy holds more rules ({counts['legacy']} vs {counts.get('nft', 0)})"
    if counts.get("nft", 0) > counts.get("legacy", 0):
        return Backend("nft"), f"iptables-nft holds more rules ({counts['nft']} vs {counts.get('legacy', 0)})"
    version = _run(["iptables", "-V"])
    if "legacy" in version:
        return Backend("legacy"), "no rules in either backend; system iptables is legacy"
    return Backend("nft"), "no rules in either backend; system iptables is nf_tables"


# -- rule computation (pure) -------------------------------------------------

def _q(comment: str) -> str:
    return f'"{comment}"' if " " in comment else comment


@dataclass
class ServiceRules:
    """The rules one service port contributes: its own chains and its lines in shared chains."""

    chains: dict[str, list[str]] = field(default_factory=dict)  # nat chains owned by this service
    shared: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (table, chain) -> lines

    def add(self, table: str, chain: str, line: str) -> None:
        self.shared.setdefault((table, chain), []).append(line)


def svc_chain(spn: ServicePortName, proto: str) -> str:
    return "KUBE-SVC-" + port_proto_hash(spn, proto)


def sep_chain(spn: ServicePortName, proto: str, ep: Endpoint) -> str:
    return "KUBE-SEP-" + endpoint_hash(spn, proto, ep.address)


def service_rules(entry: ServiceEntry, cluster_cidr: str | None, large: bool = False) -> ServiceRules:
    """kube-proxy's rules for one service port (see proxier.go syncProxyRules).

    `large` is kube-proxy's large-cluster mode (more than 1,000 endpoints): the
    per-endpoint rules carry no comments, which makes iptables-restore markedly
    cheaper on big tables.
    """
    sp = entry.port
    spn, proto = sp.name, sp.proto
    name = str(spn)
    h = port_proto_hash(spn, proto)
    svc, svl, ext, fw = (f"KUBE-SVC-{h}", f"KUBE-SVL-{h}", f"KUBE-EXT-{h}", f"KUBE-FW-{h}")
    r = ServiceRules()
    cluster_eps = entry.endpoints.cluster
    local_eps = entry.endpoints.local
    internal_eps = entry.cluster_endpoints
    external_eps = entry.external_endpoints
    uses_cluster = bool(cluster_eps) and (not sp.internal_policy_local
                                          or (sp.has_external and not sp.external_policy_local))
    uses_local = bool(local_eps) and (sp.internal_policy_local or sp.external_policy_local)
    internal_chain = svl if sp.internal_policy_local else svc
    pmatch = f"-m {proto} -p {proto}"

    # ClusterIP
    if internal_eps:
        r.add("nat", "KUBE-SERVICES", f"-A KUBE-SERVICES -m comment --comment {_q(name + ' cluster IP')} "
                                      f"{pmatch} -d {sp.cluster_ip} --dport {sp.port} -j {internal_chain}")
    else:
        # internalTrafficPolicy Local with endpoints elsewhere only: DROP, as kube-proxy
        verdict, why = ("DROP", "has no local endpoints") if cluster_eps else ("REJECT", "has no endpoints")
        r.add("filter", "KUBE-SERVICES", f"-A KUBE-SERVICES -m comment --comment {_q(f'{name} {why}')} "
                                         f"{pmatch} -d {sp.cluster_ip} --dport {sp.port} -j {verdict}")

    # External destinations: externalIPs, LB ingress IPs, NodePorts
    if sp.has_external:
        if external_eps:
            for ip in sp.external_ips:
                r.add("nat", "KUBE-SERVICES", f"-A KUBE-SERVICES -m comment --comment {_q(name + ' external IP')} "
                                              f"{pmatch} -d {ip} --dport {sp.port} -j {ext}")
            for ip in sp.load_balancer_ips:
                target = fw if sp.load_balancer_source_ranges else ext
                r.add("nat", "KUBE-SERVICES", f"-A KUBE-SERVICES -m comment --comment {_q(name + ' loadbalancer IP')} "
                                              f"{pmatch} -d {ip} --dport {sp.port} -j {target}")
                if sp.load_balancer_source_ranges:
                    r.add("filter", "KUBE-PROXY-FIREWALL",
                          f"-A KUBE-PROXY-FIREWALL -m comment --comment {_q(f'{name} traffic not accepted by {fw}')} "
                          f"{pmatch} -d {ip} --dport {sp.port} -j DROP")
            if sp.node_port:
                r.add("nat", "KUBE-NODEPORTS", f"-A KUBE-NODEPORTS -m comment --comment {_q(name)} "
                                               f"{pmatch} --dport {sp.node_port} -j {ext}")
        else:
            # No (local) endpoints: refuse at once; DROP when only local ones are missing, as kube-proxy.
            verdict, why = ("DROP", "has no local endpoints") if cluster_eps else ("REJECT", "has no endpoints")
            c = _q(f"{name} {why}")
            for ip in (*sp.external_ips, *sp.load_balancer_ips):
                r.add("filter", "KUBE-EXTERNAL-SERVICES", f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {c} "
                                                          f"{pmatch} -d {ip} --dport {sp.port} -j {verdict}")
            if sp.node_port:
                r.add("filter", "KUBE-EXTERNAL-SERVICES", f"-A KUBE-EXTERNAL-SERVICES -m comment --comment {c} "
                                                          f"-m addrtype --dst-type LOCAL {pmatch} --dport {sp.node_port} -j {verdict}")
    if sp.health_check_node_port:
        r.add("filter", "KUBE-NODEPORTS", f"-A KUBE-NODEPORTS -m comment --comment {_q(name + ' health check node port')} "
                                          f"-m tcp -p tcp --dport {sp.health_check_node_port} -j ACCEPT")

    # Per-service chains
    if sp.has_external and external_eps:
        rules = r.chains[ext] = []
        if sp.external_policy_local:
            if cluster_cidr and uses_cluster:
                rules.append(f"-A {ext} -m comment --comment {_q(f'pod traffic for {name} external destinations')} "
                             f"-s {cluster_cidr} -j {svc}")
            if uses_cluster:
                rules.append(f"-A {ext} -m comment --comment {_q(f'masquerade LOCAL traffic for {name} external destinations')} "
                             "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ")
                rules.append(f"-A {ext} -m comment --comment {_q(f'route LOCAL traffic for {name} external destinations')} "
                             f"-m addrtype --src-type LOCAL -j {svc}")
            rules.append(f"-A {ext} -j {svl}")
        else:
            rules.append(f"-A {ext} -m comment --comment {_q(f'masquerade traffic for {name} external destinations')} "
                         "-j KUBE-MARK-MASQ")
            rules.append(f"-A {ext} -j {svc}")
        if sp.load_balancer_ips and sp.load_balancer_source_ranges:
            fr = r.chains[fw] = []
            for src in sp.load_balancer_source_ranges:
                fr.append(f"-A {fw} -m comment --comment {_q(name + ' loadbalancer IP')} -s {src} -j {ext}")
            fr.append(f"-A {fw} -m comment --comment {_q(f'other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL')}")
    seps = {ep: sep_chain(spn, proto, ep) for ep in entry.endpoints.all}
    if uses_cluster:
        rules = r.chains[svc] = []
        if cluster_cidr:
            rules.append(f"-A {svc} -m comment --comment {_q(name + ' cluster IP')} {pmatch} -d {sp.cluster_ip} "
                         f"--dport {sp.port} ! -s {cluster_cidr} -j KUBE-MARK-MASQ")
        rules += _to_endpoints(svc, name, sp.affinity_timeout, cluster_eps, seps, large)
    if uses_local:
        r.chains[svl] = _to_endpoints(svl, name, sp.affinity_timeout, local_eps, seps, large)
    for ep, sep in seps.items():
        dnat = f"{pmatch} -j DNAT --to-destination {ep.address}"
        if sp.affinity_timeout:
            dnat = f"-m recent --name {sep} --set {dnat}"
        c = "" if large else f"-m comment --comment {_q(name)} "
        r.chains[sep] = [f"-A {sep} {c}-s {ep.ip} -j KUBE-MARK-MASQ", f"-A {sep} {c}{dnat}"]
    return r


def _to_endpoints(chain: str, name: str, affinity: int, eps: tuple[Endpoint, ...],
                  sep_names: dict[Endpoint, str], large: bool = False) -> list[str]:
    out = []
    seps = [(ep, sep_names[ep], "" if large else f"-m comment --comment {_q(f'{name} -> {ep.address}')} ")
            for ep in eps]
    if affinity:
        for ep, sep, c in seps:
            out.append(f"-A {chain} {c}-m recent --name {sep} "
                       f"--mask 255.255.255.255 --rcheck --seconds {affinity} --reap -j {sep}")
    n = len(seps)
    for i, (ep, sep, c) in enumerate(seps):
        stat = f"-m statistic --mode random --probability {1.0 / (n - i):0.10f} " if i < n - 1 else ""
        out.append(f"-A {chain} {c}{stat}-j {sep}")
    return out


# -- the data plane -----------------------------------------------------------

SharedKey = tuple[str, str]
_LINE_ORDER = (("filter", FILTER_CHAINS), ("nat", NAT_CHAINS))


class IptablesDataPlane:
    """Programs kube-proxy's iptables layout with one iptables-restore per sync."""

    name = "iptables"

    def __init__(self, backend: Backend, cluster_cidr: str | None = "10.244.0.0/16",
                 cleanup_leftovers: bool = True):
        self.backend = backend
        self.cleanup_leftovers = cleanup_leftovers  # remove the userspace mode's rules on the first sync
        self.cluster_cidr = cluster_cidr
        self._applied: dict[ServicePortName, ServiceEntry] = {}
        self._rules: dict[ServicePortName, ServiceRules] = {}
        # What we know the shared chains hold, in order: (owner or None, line).
        self._shared: dict[SharedKey, list[tuple[ServicePortName | None, str]]] = {}
        self._known_chains: set[str] = set()  # per-service chains present in the kernel
        self._need_full = True
        self._chain_rules = 0  # rules in per-service chains, kept as they change
        self.large = False  # kube-proxy's large-cluster mode (no per-endpoint comments)
        self._endpoints = 0  # endpoints over all applied service ports
        self._flipped = False  # the last compute() switched large-cluster mode
        self.last_restore_input = ""

    # -- rendering ----------------------------------------------------------
    def _shared_lines(self) -> dict[SharedKey, list[tuple[ServicePortName | None, str]]]:
        lines: dict[SharedKey, list[tuple[ServicePortName | None, str]]] = {}
        for table, chains in _LINE_ORDER:
            for chain in chains:
                lines[(table, chain)] = [(None, line) for line in STATIC_RULES.get((table, chain), [])]
        for spn in sorted(self._rules):
            for key, ls in self._rules[spn].shared.items():
                lines[key].extend((spn, line) for line in ls)
        lines[("nat", "KUBE-SERVICES")].append((None, NODEPORTS_LAST))
        return lines

    def render_full(self, stale: set[str], jumps: dict[Jump, str | None] | None = None) -> str:
        """One restore input rewriting every kube chain; `stale` chains are deleted and the
        built-in chains' missing `jumps` into ours inserted, in the same transaction."""
        shared = self._shared_lines()
        chains = sorted({c for r in self._rules.values() for c in r.chains})
        out: list[str] = []
        for table, names in _LINE_ORDER:
            out.append(f"*{table}")
            if self.backend.name == "nft":
                out.append(WHOLE_TABLE_CACHE)
            out.extend(f":{c} - [0:0]" for c in names)
            if table == "nat":
                out.extend(f":{c} - [0:0]" for c in chains)
                out.extend(f":{c} - [0:0]" for c in sorted(stale))
            for c in names:
                out.extend(line for _, line in shared[(table, c)])
            out.extend(jump_lines(jumps or {}, table))
            if table == "nat":
                for spn in sorted(self._rules):
                    for c, ls in sorted(self._rules[spn].chains.items()):
                        out.extend(ls)
                out.extend(f"-X {c}" for c in sorted(stale))
            out.append("COMMIT")
        # KUBE-IPTABLES-HINT tells later backend detection (ours, kube-proxy's) which one we chose
        out += ["*mangle", f":{HINT_CHAINS[0]} - [0:0]", "COMMIT"]
        self._shared = shared
        return "\n".join(out) + "\n"

    def render_partial(self, changed: set[ServicePortName], old_rules: dict[ServicePortName, ServiceRules]) -> str:
        """A restore input touching only `changed` services' chains and shared-chain lines.

        Shared chains are edited by rule number (we know their content exactly):
        the changed services' old lines are deleted bottom up, then their new lines
        inserted top down at the positions a full sync would give them.
        """
        body: dict[str, list[str]] = {"filter": [], "nat": []}
        # Only services whose lines in a shared chain differ touch it: an endpoint
        # change (the common case) rewrites the service's own chains and nothing else.
        touched: dict[SharedKey, set[ServicePortName]] = {}
        empty = ServiceRules()
        for spn in changed:
            before, after = old_rules.get(spn, empty).shared, self._rules.get(spn, empty).shared
            for key in before.keys() | after.keys():
                if before.get(key) != after.get(key):
                    touched.setdefault(key, set()).add(spn)
        all_changed = changed
        for key in sorted(touched):
            changed = touched[key]
            table, chain = key
            old_lines = self._shared.get(key, [])
            kept: list[tuple[ServicePortName | None, str]] = []
            for pos in range(len(old_lines), 0, -1):
                owner = old_lines[pos - 1][0]
                if owner is not None and owner in changed:
                    body[table].append(f"-D {chain} {pos}")
            kept = [ol for ol in old_lines if ol[0] is None or ol[0] not in changed]
            # canonical order: static prefix, services sorted by name, static suffix
            prefix = 0
            while prefix < len(kept) and kept[prefix][0] is None:
                prefix += 1
            end = len(kept)
            while end > prefix and kept[end - 1][0] is None:
                end -= 1
            owners = [o for o, _ in kept[prefix:end]]
            inserts: list[tuple[int, ServicePortName, list[str]]] = []
            for spn in changed:
                rules = self._rules.get(spn)
                lines = rules.shared.get(key) if rules is not None else None
                if lines:
                    inserts.append((prefix + bisect.bisect_left(owners, spn), spn, lines))
            inserts.sort(key=lambda t: (t[0], t[1]))
            new_lines = kept[:]
            shift = 0
            for idx, spn, lines in inserts:
                at = idx + shift
                new_lines[at:at] = [(spn, line) for line in lines]
                for k, line in enumerate(lines):
                    body[table].append(f"-I {chain} {at + k + 1} " + line.split(" ", 2)[2])
                shift += len(lines)
            self._shared[key] = new_lines
        changed = all_changed
        old_chains = {c for spn in changed for c in (old_rules.get(spn) or ServiceRules()).chains}
        new_chains: dict[str, list[str]] = {}
        for spn in sorted(changed):
            if spn in self._rules:
                new_chains.update(self._rules[spn].chains)
        stale = old_chains - set(new_chains)
        out: list[str] = []
        if body["filter"]:
            out += ["*filter", *body["filter"], "COMMIT"]
        if new_chains or body["nat"] or stale:
            out += ["*nat", *(f":{c} - [0:0]" for c in sorted(set(new_chains) | stale))]
            for c in sorted(new_chains):
                out.extend(new_chains[c])
            out += body["nat"]
            out += [f"-X {c}" for c in sorted(stale)]
            out.append("COMMIT")
        self._known_chains -= stale
        self._known_chains |= set(new_chains)
        return "\n".join(out) + "\n" if out else ""

    # -- applying -----------------------------------------------------------
    async def _restore(self, text: str) -> None:
        self.last_restore_input = text
        rc, err = await self.backend.restore_noflush(text)
        if rc != 0:
            raise RuntimeError(f"{self.backend.restore} failed ({rc}): {err[:2000]}")

    async def _existing_chains(self) -> set[str]:
        """Our per-service chains in the kernel's nat table."""
        return {c for c in await chain_names(self.backend, "nat") if c.startswith(PER_SERVICE_PREFIXES)}

    async def ensure_jumps(self) -> None:
        """The built-in chains' jumps into ours (added once, checked on full syncs)."""
        await ensure_jumps(self.backend, JUMPS)

    def compute(self, desired: DesiredState, full: bool) -> tuple[bool, set[ServicePortName], dict]:
        """Update per-service rules for what changed; returns (full, changed, old rules)."""
        full = full or self._need_full
        new, old = desired.services, self._applied
        changed = changed_services(desired, old, full)
        for spn in changed:
            a, b = new.get(spn), old.get(spn)
            self._endpoints += (len(a.endpoints.all) if a else 0) - (len(b.endpoints.all) if b else 0)
        large = self._endpoints > LARGE_CLUSTER_ENDPOINTS
        if large != self.large:
            # every endpoint rule changes shape: rewrite everything once
            self.large, full = large, True
            self._flipped = True
            changed = set(new) | set(self._rules)
        old_rules = {spn: self._rules[spn] for spn in changed if spn in self._rules}
        for spn in changed:
            entry = desired.services.get(spn)
            gone = self._rules.pop(spn, None)
            if gone is not None:
                self._chain_rules -= sum(len(ls) for ls in gone.chains.values())
            if entry is not None:
                r = self._rules[spn] = service_rules(entry, self.cluster_cidr, self.large)
                self._chain_rules += sum(len(ls) for ls in r.chains.values())
        self._applied = dict(desired.services)
        return full, changed, old_rules

    async def sync(self, desired: DesiredState, *, full: bool = False) -> SyncResult:
        t0 = time.perf_counter()
        # A big sync allocates hundreds of thousands of strings, all kept: the cyclic
        # GC would rescan the growing heap again and again for nothing.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return await self._sync(desired, full, t0)
        finally:
            if gc_was_enabled:
                gc.enable()

    async def _sync(self, desired: DesiredState, full: bool, t0: float) -> SyncResult:
        repair = full and not self._need_full  # a periodic drift repair, nothing forces it
        self._flipped = False
        full, changed, old_rules = self.compute(desired, full)
        if full and repair and not self._flipped and self.backend.name == "nft" and len(self._rules) > NFT_REPAIR_CHECK:
            # One iptables-nft transaction over a big table takes minutes and would hold
            # every change back meanwhile: check for drift first (chain set and the
            # built-in jumps), and rewrite everything only when something is off.
            await self.ensure_jumps()
            wanted = {c for r in self._rules.values() for c in r.chains}
            existing = await self._existing_chains()
            if existing == wanted:
                full = False
            else:
                log.warning("kube chains drifted; rewriting all of them")
                self._known_chains |= existing
        if full:
            if self._need_full:  # first sync (or after a failure): learn what a previous run left
                if self.cleanup_leftovers:
                    from kubesvc.proxy.dataplanes.cleanup import remove_leftovers
                    await remove_leftovers(self.backend, "iptables")
                    self.cleanup_leftovers = False
                self._known_chains |= await self._existing_chains()
            wanted = {c for r in self._rules.values() for c in r.chains}
            stale = self._known_chains - wanted
            text = self.render_full(stale, await missing_jumps(self.backend, JUMPS))
        else:
            text = self.render_partial(changed, old_rules)
        t1 = time.perf_counter()
        try:
            if text:
                await self._restore(text)
            t2 = time.perf_counter()
            if full:
                self._known_chains = {c for r in self._rules.values() for c in r.chains}
        except Exception:
            self._need_full = True  # our picture of the kernel is unknown now
            raise
        self._need_full = False
        return SyncResult(full=full, services_written=len(self._rules) if full else len(changed),
                          rules=self.rule_counts(), compute_seconds=t1 - t0, apply_seconds=t2 - t1,
                          other_seconds=time.perf_counter() - t2)

    def rule_counts(self) -> dict[str, int]:
        counts = {"filter": 0, "nat": 0}
        for (table, _), lines in self._shared.items():
            counts[table] += len(lines)
        counts["nat"] += self._chain_rules
        return counts

    async def close(self) -> None:
        """Nothing to stop: the rules stay in the kernel so traffic survives a restart."""


def _split(spec: str) -> list[str]:
    import shlex
    return shlex.split(spec)


async def chain_names(backend: Backend, table: str) -> set[str]:
    """The names of the chains in one table of `backend`.

    On iptables-nft the names come from `nft list chains`: iptables-nft-save would
    translate every rule back to iptables syntax for nothing (6 s at 10,000
    services, against 0.2 s for the names).
    """
    nft = backend.name == "nft" and shutil.which("nft")
    argv = ["nft", "list", "chains", "ip"] if nft else [backend.save, "-t", table]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    out = (await proc.communicate())[0].decode()
    if not nft:
        return set(re.findall(r"^:(\S+)", out, re.M))
    m = re.search(rf"^table ip {table} {{$(.*?)^}}$", out, re.M | re.S)
    return set(re.findall(r"^\s*chain (\S+) {", m.group(1), re.M)) if m else set()


async def _iptables(backend: Backend, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(backend.iptables, "-w", "5", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    return proc.returncode, out.decode()


async def missing_jumps(backend: Backend, jumps: list[Jump]) -> dict[Jump, str | None]:
    """The jumps from built-in chains that the kernel lacks, each with its chain's policy
    when it is an iptables-nft chain holding no rule yet (see jump_lines), else None.

    Each built-in chain is listed once (`iptables -S CHAIN`) rather than asked about
    every jump with `-C`: on a big table each call costs tens of milliseconds (legacy
    reads the whole table, nft its cache). A spec not found verbatim in the listing
    but jumping to the same chain is asked about with `-C`, so a difference in how
    iptables prints a rule never leads to a duplicate.
    """
    listed: dict[tuple[str, str], list[str]] = {}
    missing: dict[Jump, str | None] = {}
    for table, chain, spec in jumps:
        if (table, chain) not in listed:
            _, out = await _iptables(backend, "-t", table, "-S", chain)
            listed[(table, chain)] = out.splitlines()
        listing = listed[(table, chain)]
        if f"-A {chain} {spec}" in listing:
            continue
        target = f"-j {spec.rsplit(' ', 1)[-1]}"
        if any(line.endswith(target) for line in listing) and \
                (await _iptables(backend, "-t", table, "-C", chain, *_split(spec)))[0] == 0:
            continue
        # (legacy tables always hold their built-in chains: nothing to declare there)
        unused = backend.name == "nft" and not any(line.startswith("-A ") for line in listing)
        policy = next((line.split()[2] for line in listing if line.startswith(f"-P {chain} ")), "ACCEPT")
        missing[(table, chain, spec)] = policy if unused else None
    return missing


def jump_lines(jumps: dict[Jump, str | None], table: str) -> list[str]:
    """Restore lines putting `jumps` of one table first in their chains, as kube-proxy's
    ensureRule does with `-I`. A chain without rules is declared with the policy it has
    and the jumps appended (in reverse, for the same order): on iptables-nft a built-in
    chain nobody has used does not exist yet, and a restore creates it only when declared."""
    lines = [f"-I {chain} {spec}" for (t, chain, spec), policy in jumps.items() if t == table and policy is None]
    fresh = [(chain, spec, policy) for (t, chain, spec), policy in jumps.items() if t == table and policy]
    lines += [f":{chain} {policy} [0:0]" for chain, policy in dict((c, p) for c, _, p in fresh).items()]
    lines += [f"-A {chain} {spec}" for chain, spec, _ in reversed(fresh)]
    return lines


async def ensure_jumps(backend: Backend, jumps: list[Jump], strict: bool = True) -> None:
    """Insert the jumps the built-in chains lack (kube-proxy's ensureRule), in one
    iptables-restore; shared by the iptables, ipvs and userspace modes. With `strict` a
    failure raises, with the tool's message; without, each jump is tried on its own."""
    missing = await missing_jumps(backend, jumps)
    if not missing:
        return
    text = "".join(f"*{t}\n" + "\n".join(jump_lines(missing, t)) + "\nCOMMIT\n"
                   for t in sorted({t for t, _, _ in missing}))
    rc, err = await backend.restore_noflush(text)
    if rc == 0:
        return
    if strict:
        raise RuntimeError(f"{backend.restore} (jumps from built-in chains) failed ({rc}): {err[:2000]}")
    for table, chain, spec in missing:
        await _iptables(backend, "-t", table, "-I", chain, *_split(spec))  # on their own: what works, works


def available() -> bool:
    return os.geteuid() == 0 and shutil.which("iptables-restore") is not None
