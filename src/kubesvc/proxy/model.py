"""The proxy's desired state: what every data plane must make true on this node.

The change tracker (tracker.py) turns Services, EndpointSlices and this Node into
these immutable values; a data plane receives a :class:`DesiredState` in
``sync(desired)`` and diffs it against what it applied last. Equality of these
values is what "this service changed" means, so they hold only what the data
planes use.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import NamedTuple


class ServicePortName(NamedTuple):
    """One port of one service: ``namespace/name:port`` as kube-proxy prints it.

    A NamedTuple rather than a dataclass: it is a dict key and a sort key tens of
    thousands of times per sync, and tuple hashing/ordering run in C.
    """

    namespace: str
    name: str
    port: str = ""  # the service port's name ("" when the service has one unnamed port)
    protocol: str = "TCP"

    def __str__(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port}" if self.port else base

    @property
    def service(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class ServicePort:
    """Everything about one service port that decides where its traffic goes."""

    name: ServicePortName
    cluster_ip: str
    port: int
    protocol: str = "TCP"  # TCP, UDP or SCTP
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    # ClientIP affinity timeout in seconds; 0 = no session affinity.
    affinity_timeout: int = 0
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0

    @property
    def has_external(self) -> bool:
        return bool(self.node_port or self.external_ips or self.load_balancer_ips)

    @property
    def proto(self) -> str:
        """Lower-case protocol, as iptables and kube-proxy's hashes spell it."""
        return self.protocol.lower()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One backend address of a service port, with its EndpointSlice conditions."""

    ip: str
    port: int
    node_name: str = ""
    is_local: bool = False
    ready: bool = True
    serving: bool = True
    terminating: bool = False

    @property
    def address(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class EndpointSet:
    """The endpoints of one service port, already categorised as kube-proxy does.

    ``cluster`` serves traffic under policy Cluster (internal traffic, and external
    traffic unless externalTrafficPolicy is Local); ``local`` is the subset on this
    node. Both prefer ready endpoints and fall back to serving+terminating ones
    only when none is ready. ``all`` is every endpoint either list uses.
    """

    cluster: tuple[Endpoint, ...] = ()
    local: tuple[Endpoint, ...] = ()
    all: tuple[Endpoint, ...] = ()  # computed: cluster + local without duplicates

    def __post_init__(self) -> None:
        if not self.all and (self.cluster or self.local):
            seen = dict.fromkeys(self.cluster)
            seen.update(dict.fromkeys(self.local))
            object.__setattr__(self, "all", tuple(seen))

    @classmethod
    def categorize(cls, endpoints: list[Endpoint] | tuple[Endpoint, ...]) -> "EndpointSet":
        # Kubernetes' rule (pkg/proxy/topology.go): use ready endpoints; only when
        # none is ready use the ones that still serve while terminating.
        ready = [e for e in endpoints if e.ready]
        cluster = ready or [e for e in endpoints if e.serving and e.terminating]
        local_ready = [e for e in endpoints if e.ready and e.is_local]
        local = local_ready or [e for e in endpoints if e.is_local and e.serving and e.terminating]
        key = lambda e: (e.ip, e.port)  # noqa: E731 - stable order = stable rules
        return cls(tuple(sorted(cluster, key=key)), tuple(sorted(local, key=key)))


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """A service port with its endpoints: the unit a data plane programs."""

    port: ServicePort
    endpoints: EndpointSet = EndpointSet()

    @property
    def cluster_endpoints(self) -> tuple[Endpoint, ...]:
        """Endpoints for traffic to the ClusterIP (internalTrafficPolicy applied)."""
        return self.endpoints.local if self.port.internal_policy_local else self.endpoints.cluster

    @property
    def external_endpoints(self) -> tuple[Endpoint, ...]:
        """Endpoints for NodePort / externalIP / LB traffic (externalTrafficPolicy applied)."""
        return self.endpoints.local if self.port.external_policy_local else self.endpoints.cluster


@dataclass(slots=True)
class DesiredState:
    """Every service port this node must serve, plus the node facts data planes need."""

    services: dict[ServicePortName, ServiceEntry] = field(default_factory=dict)
    node_name: str = ""
    node_ips: tuple[str, ...] = ()
    # Hint from the tracker: names changed since the previous state (None = unknown,
    # treat everything as changed). Data planes may also diff on their own.
    changed: frozenset[ServicePortName] | None = None


def port_proto_hash(spn: ServicePortName | str, protocol: str) -> str:
    """kube-proxy's chain-name hash: base32(sha256(name + protocol))[:16]."""
    return _b32_16(hashlib.sha256(f"{spn}{protocol.lower()}".encode()).digest())


def endpoint_hash(spn: ServicePortName | str, protocol: str, endpoint: str) -> str:
    """kube-proxy's KUBE-SEP- hash: base32(sha256(name + protocol + ip:port))[:16]."""
    return _b32_16(hashlib.sha256(f"{spn}{protocol.lower()}{endpoint}".encode()).digest())


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_SHIFTS = tuple(range(75, -1, -5))


def _b32_16(digest: bytes) -> str:
    """The first 16 characters of base32(digest) = the first 10 bytes, 5 bits at a time.

    Python's base64.b32encode is pure Python and dominated first syncs of big
    clusters (30,000 chain names for 10,000 services)."""
    n = int.from_bytes(digest[:10], "big")
    return "".join([_B32[(n >> s) & 31] for s in _SHIFTS])
