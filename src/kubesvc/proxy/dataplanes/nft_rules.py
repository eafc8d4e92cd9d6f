"""What kube-proxy's nftables layout holds for one service port (pure: no kernel).

Names and shapes follow kube-proxy's pkg/proxy/nftables/proxier.go: in table
``ip kube-proxy`` the verdict maps ``service-ips`` / ``service-nodeports``
(ClusterIP, externalIPs, LB ingress IPs, NodePorts → the service's chain),
``no-endpoint-services`` / ``no-endpoint-nodeports`` (→ reject or drop),
``firewall-ips`` (loadBalancerSourceRanges), per service port the chains
``service-``/``local-``/``external-``/``firewall-`` + ``HASH-ns/name/proto/port``,
and ``affinity-HASH-ns/name/proto/port__ip/port`` sets for ClientIP affinity.

Two measured departures, both about the cost of loading and changing the table
(docs/proxy-nftables.md has the figures):

* kube-proxy spreads with ``numgen random mod N vmap { 0 : goto ..., ... }``, an
  *anonymous set per service*. The kernel names and binds each anonymous set by
  walking every set in the table, so n services cost O(n²) to load (10,000: ~61 s
  in one transaction; named per-service maps are O(n²) too, set lookup by name is
  a list walk). Here a service spreads with one rule per endpoint,
  ``numgen random mod (N-i) == 0 ... dnat to endpoint-i`` (the conditional
  probabilities of iptables' ``statistic`` rules) and uses no set; only a service
  with :data:`VMAP_MIN_ENDPOINTS` or more endpoints (few of them) gets one
  anonymous map, ``dnat ip addr . port to numgen random mod N map { ... }``, so a
  new connection never walks a long chain.
* kube-proxy has an ``endpoint-...`` chain per endpoint (hairpin mark, affinity
  update, DNAT). The ``nft`` program reads every chain of the table before any
  transaction that adds rules or elements, so chains cost on *every* sync; two
  thirds of them were endpoint chains. Their work is done in the service chain's
  rules instead (``update @affinity-... { ip saddr } dnat to ...``), and hairpin
  traffic (a pod reaching itself through its service) is masqueraded from one
  shared set of ``endpoint . endpoint`` address pairs, ``hairpin-endpoints``.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

from kubesvc.proxy.model import Endpoint, ServiceEntry, ServicePortName

TABLE = "kube-proxy"
FAMILY = "ip"
MASQ_MARK = "0x4000"
# Services with at least this many endpoints use kube-proxy's anonymous numgen vmap.
VMAP_MIN_ENDPOINTS = 16

SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
FIREWALL_IPS = "firewall-ips"
HAIRPIN_ENDPOINTS = "hairpin-endpoints"
REJECT_CHAIN = "reject-chain"
MARK_MASQ = "mark-for-masquerade"
MASQUERADING = "masquerading"
SERVICES = "services"
ENDPOINTS_CHECK = "endpoints-check"
FIREWALL_CHECK = "firewall-check"

ADDR_KEY = "ipv4_addr . inet_proto . inet_service"
PORT_KEY = "inet_proto . inet_service"
# (name, key type, comment) of the shared verdict maps; per-service elements go in them.
MAPS: tuple[tuple[str, str, str], ...] = (
    (NO_ENDPOINT_SERVICES, ADDR_KEY, "vmap to drop or reject packets to services with no endpoints"),
    (NO_ENDPOINT_NODEPORTS, PORT_KEY, "vmap to drop or reject packets to service nodeports with no endpoints"),
    (FIREWALL_IPS, ADDR_KEY, "destinations that are subject to LoadBalancerSourceRanges"),
    (SERVICE_IPS, ADDR_KEY, "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
    (SERVICE_NODEPORTS, PORT_KEY, "NodePort traffic"),
)
# Shared plain sets (elements without verdicts), claimed per service like map keys.
SETS: tuple[tuple[str, str, str], ...] = (
    (HAIRPIN_ENDPOINTS, "ipv4_addr . ipv4_addr", "endpoint . endpoint: a pod reaching itself through a service"),
)

# Base chains: (name, type, hook, priority). Filtering runs before DNAT so it sees
# the service address (kube-proxy: "dstnat - 10", which nft accepts only as a number
# on the input/forward hooks).
BASE_CHAINS: tuple[tuple[str, str, str, str], ...] = (
    ("filter-prerouting", "filter", "prerouting", "-110"),
    ("filter-input", "filter", "input", "-110"),
    ("filter-forward", "filter", "forward", "-110"),
    ("filter-output", "filter", "output", "-110"),
    ("nat-prerouting", "nat", "prerouting", "-100"),
    ("nat-output", "nat", "output", "-100"),
    ("nat-postrouting", "nat", "postrouting", "100"),
)
# Rules of the base chains: (chain, rule), in order.
BASE_RULES: tuple[tuple[str, str], ...] = (
    ("filter-prerouting", f"ct state new jump {FIREWALL_CHECK}"),
    ("filter-input", f"ct state new jump {ENDPOINTS_CHECK}"),
    ("filter-forward", f"ct state new jump {ENDPOINTS_CHECK}"),
    ("filter-output", f"ct state new jump {ENDPOINTS_CHECK}"),
    ("filter-output", f"ct state new jump {FIREWALL_CHECK}"),
    ("nat-prerouting", f"jump {SERVICES}"),
    ("nat-output", f"jump {SERVICES}"),
    ("nat-postrouting", f"jump {MASQUERADING}"),
)
NO_LOCALHOST = "ip daddr != 127.0.0.0/8"
# The fixed regular chains and their rules.
STATIC_CHAINS: dict[str, tuple[str, ...]] = {
    ENDPOINTS_CHECK: (
        f"ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}",
        f"fib daddr type local {NO_LOCALHOST} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}",
    ),
    FIREWALL_CHECK: (f"ip daddr . meta l4proto . th dport vmap @{FIREWALL_IPS}",),
    SERVICES: (
        f"ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}",
        f"fib daddr type local {NO_LOCALHOST} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}",
    ),
    MARK_MASQ: (f"mark set mark or {MASQ_MARK}",),
    MASQUERADING: (
        # hairpin: the source is the endpoint the connection was DNATed to
        f"ip saddr . ip daddr @{HAIRPIN_ENDPOINTS} masquerade fully-random",
        f"mark and {MASQ_MARK} == 0 return",
        f"mark set mark xor {MASQ_MARK}",
        "masquerade fully-random",
    ),
    REJECT_CHAIN: ("reject",),
}
STATIC_COMMENTS = {REJECT_CHAIN: "helper for @no-endpoint-services / @no-endpoint-nodeports"}


def hash_and_truncate(name: str) -> str:
    """kube-proxy's chain-name base: first 8 base32 chars of sha256(name), '-', name."""
    encoded = base64.b32encode(hashlib.sha256(name.encode()).digest()[:5]).decode()
    name = f"{encoded}-{name}"
    return name[:237] + "..." if len(name) > 240 else name


def service_base(spn: ServicePortName, proto: str) -> str:
    """``HASH-namespace/name/protocol/portName`` (e.g. ``ULMVA6XW-ns1/svc1/tcp/p80``)."""
    return hash_and_truncate(f"{spn.namespace}/{spn.name}/{proto}/{spn.port}")


def endpoint_base(spn: ServicePortName, proto: str, ep: Endpoint) -> str:
    """``HASH-namespace/name/protocol/portName__ip/port`` (IPv6 colons become dots)."""
    return hash_and_truncate(f"{spn.namespace}/{spn.name}/{proto}/{spn.port}__{ep.ip.replace(':', '.')}/{ep.port}")


def is_service_chain(name: str) -> bool:
    """Per-service chains always hold a '/'; the fixed ones never do."""
    return "/" in name


# An element of a shared map or set: (map, key, verdict or "" in a set, comment or "").
Element = tuple[str, str, str, str]


@dataclass
class ServiceNft:
    """Everything one service port puts into the table."""

    chains: dict[str, list[str]] = field(default_factory=dict)  # chain -> rules, in order
    elements: list[Element] = field(default_factory=list)
    affinity_sets: dict[str, int] = field(default_factory=dict)  # set -> timeout seconds

    @property
    def rule_count(self) -> int:
        return sum(len(r) for r in self.chains.values())


def _comment(text: str) -> str:
    return 'comment "' + text.replace('"', "'") + '"'


def service_nft(entry: ServiceEntry, cluster_cidr: str | None) -> ServiceNft:
    """kube-proxy's chains, map elements and affinity sets for one service port.

    Follows syncProxyRules in kube-proxy's nftables proxier, with the semantics
    of this project's iptables data plane (same desired state in, same traffic out).
    """
    sp = entry.port
    spn, proto = sp.name, sp.proto
    name = str(spn)
    base = service_base(spn, proto)
    svc, svl, ext, fw = f"service-{base}", f"local-{base}", f"external-{base}", f"firewall-{base}"
    out = ServiceNft()
    cluster_eps, local_eps = entry.endpoints.cluster, entry.endpoints.local
    has_endpoints = bool(cluster_eps)
    uses_cluster = bool(cluster_eps) and (not sp.internal_policy_local
                                          or (sp.has_external and not sp.external_policy_local))
    uses_local = bool(local_eps) and (sp.internal_policy_local or sp.external_policy_local)
    internal_chain = svl if sp.internal_policy_local else svc
    has_internal = has_endpoints and (not sp.internal_policy_local or bool(local_eps))
    external_policy_chain = svl if sp.external_policy_local else svc
    has_external = has_endpoints and (not sp.external_policy_local or bool(local_eps))
    uses_ext_chain = has_endpoints and sp.has_external

    if not has_endpoints:
        internal_verdict = external_verdict = f"goto {REJECT_CHAIN}"
    else:
        internal_verdict = "drop" if not has_internal else ""
        external_verdict = "drop" if not has_external else ""

    def key(ip: str) -> str:
        return f"{ip} . {proto} . {sp.port}"

    # ClusterIP
    if has_internal:
        out.elements.append((SERVICE_IPS, key(sp.cluster_ip), f"goto {internal_chain}", ""))
    else:
        out.elements.append((NO_ENDPOINT_SERVICES, key(sp.cluster_ip), internal_verdict, name))
    # externalIPs
    for ip in sp.external_ips:
        if has_endpoints:
            out.elements.append((SERVICE_IPS, key(ip), f"goto {ext}", ""))
        if not has_external:
            out.elements.append((NO_ENDPOINT_SERVICES, key(ip), external_verdict, name))
    # LoadBalancer ingress IPs, with loadBalancerSourceRanges through firewall-ips
    uses_fw = bool(sp.load_balancer_ips and sp.load_balancer_source_ranges)
    if uses_fw:
        out.chains[fw] = [f"ip saddr != {{ {', '.join(sp.load_balancer_source_ranges)} }} drop"]
    for ip in sp.load_balancer_ips:
        if has_endpoints:
            out.elements.append((SERVICE_IPS, key(ip), f"goto {ext}", ""))
        if uses_fw:
            out.elements.append((FIREWALL_IPS, key(ip), f"goto {fw}", name))
    if not has_external:
        for ip in sp.load_balancer_ips:
            out.elements.append((NO_ENDPOINT_SERVICES, key(ip), external_verdict, name))
    # NodePort
    if sp.node_port:
        np_key = f"{proto} . {sp.node_port}"
        if has_endpoints:
            out.elements.append((SERVICE_NODEPORTS, np_key, f"goto {ext}", ""))
        if not has_external:
            out.elements.append((NO_ENDPOINT_NODEPORTS, np_key, external_verdict, name))

    # Per-service chains
    used = entry.endpoints.all if (uses_cluster or uses_local) else ()
    affinity = {ep: f"affinity-{endpoint_base(spn, proto, ep)}" for ep in used} if sp.affinity_timeout else {}
    for name_ in affinity.values():
        out.affinity_sets[name_] = sp.affinity_timeout
    out.elements += [(HAIRPIN_ENDPOINTS, f"{ip} . {ip}", "", "") for ip in sorted({ep.ip for ep in used})]
    if uses_cluster:
        rules = out.chains[svc] = []
        if cluster_cidr:
            # masquerade off-cluster traffic to the ClusterIP (it may bounce off-node)
            rules.append(f"ip daddr {sp.cluster_ip} {proto} dport {sp.port} ip saddr != {cluster_cidr} "
                         f"jump {MARK_MASQ}")
        rules += _to_endpoints(proto, cluster_eps, affinity)
    if uses_local:
        out.chains[svl] = _to_endpoints(proto, local_eps, affinity)
    if uses_ext_chain:
        rules = out.chains[ext] = []
        if not sp.external_policy_local:
            rules.append(f"jump {MARK_MASQ}")  # endpoints may be on other nodes
        elif uses_cluster:
            # Pods and the node itself reach external destinations as if from outside and
            # back in: neither traffic policy applies (kube-proxy's short-circuits).
            if cluster_cidr:
                rules.append(f"ip saddr {cluster_cidr} goto {svc} {_comment('short-circuit pod traffic')}")
            rules.append(f"fib saddr type local jump {MARK_MASQ} {_comment('masquerade local traffic')}")
            rules.append(f"fib saddr type local goto {svc} {_comment('short-circuit local traffic')}")
        if has_external:
            rules.append(f"goto {external_policy_chain}")
    return out


def _to_endpoints(proto: str, eps: tuple[Endpoint, ...], affinity: dict[Endpoint, str]) -> list[str]:
    """Rules choosing one endpoint and DNATing to it (affinity first, as kube-proxy)."""
    def dnat(ep: Endpoint) -> str:
        remember = f"update @{affinity[ep]} {{ ip saddr }} " if affinity else ""
        return f"{remember}dnat to {ep.address}"

    rules = [f"ip saddr @{affinity[ep]} meta l4proto {proto} {dnat(ep)}" for ep in eps] if affinity else []
    n = len(eps)
    if n >= VMAP_MIN_ENDPOINTS and not affinity:
        targets = ", ".join(f"{i} : {ep.ip} . {ep.port}" for i, ep in enumerate(eps))
        return [f"meta l4proto {proto} dnat ip addr . port to numgen random mod {n} map {{ {targets} }}"]
    for i, ep in enumerate(eps):
        pick = f"numgen random mod {n - i} == 0 " if i < n - 1 else ""
        rules.append(f"meta l4proto {proto} {pick}{dnat(ep)}")
    return rules
