"""The cluster zone: Kubernetes DNS-Based Service Discovery 1.1.0, as CoreDNS answers it.

``ClusterZone`` holds a compact view of Services, their ready endpoints, Namespaces
and (for ``--pods verified``) Pod IPs, and answers one question at a time with a
``Result``: rcode, answer/additional RRsets, and the *dependencies* of that
answer (which services, IPs, namespaces it was built from). The answer cache
files each prebuilt response under its dependencies, and every change here
reports the dependencies it touched, so a write through the API invalidates
exactly the answers built from the changed objects.

Where the spec is silent this follows CoreDNS's kubernetes plugin (parse.go,
kubernetes.go, backend_lookup.go): names are parsed right to left
(``[[_port._proto.]|[endpoint.]]service.namespace.svc.zone``), port and protocol
are wild when absent, an endpoint is named by its hostname else its IP with
dashes, SRV priority 0 and weight 100/n, a headless service without ready
endpoints is NXDOMAIN, and a name that exists with no data of the asked type is
NODATA with the zone's SOA.

This module knows nothing of lightkube or sockets: ``sources`` feeds it plain
``ServiceInfo`` / ``EndpointInfo`` values, and the server turns ``Result`` into
wire bytes.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Iterable

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.reversename
import dns.rrset

IN = dns.rdataclass.IN
A, AAAA, SRV, CNAME, PTR, TXT, SOA, NS, ANY = (
    dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.SRV, dns.rdatatype.CNAME, dns.rdatatype.PTR,
    dns.rdatatype.TXT, dns.rdatatype.SOA, dns.rdatatype.NS, dns.rdatatype.ANY)

SPEC_VERSION = "1.1.0"
# The SOA timers CoreDNS puts in every negative answer (plugin/backend_lookup.go).
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400

Dep = tuple  # ("svc", ns, name) | ("ip", ip) | ("namespace", ns) | ("pod", ns, ip) | ("dns",)

_REVERSE_V4 = dns.name.from_text("in-addr.arpa.")
_REVERSE_V6 = dns.name.from_text("ip6.arpa.")


@dataclass(frozen=True, slots=True)
class PortInfo:
    """A service or endpoint port: the name and protocol make up ``_name._proto`` of SRV names."""

    name: str
    protocol: str  # "TCP" | "UDP" | "SCTP"
    port: int


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """What DNS needs of a Service."""

    namespace: str
    name: str
    cluster_ips: tuple[str, ...] = ()        # empty for headless and ExternalName
    headless: bool = False
    external_name: str | None = None
    ports: tuple[PortInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """One ready endpoint address of a service, with its slice's ports."""

    ip: str
    hostname: str | None = None
    ports: tuple[PortInfo, ...] = ()

    @property
    def label(self) -> str:
        """The endpoint's DNS label: its hostname, else its IP with dashes (CoreDNS endpointHostname)."""
        if self.hostname:
            return self.hostname
        return self.ip.replace(".", "-") if "." in self.ip else self.ip.replace(":", "-")


@dataclass
class Result:
    """An answer from the zone, before it is rendered."""

    rcode: int = dns.rcode.NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    deps: set = field(default_factory=set)
    # An ExternalName target outside the zone: the server resolves it upstream and appends.
    chase: dns.name.Name | None = None

    @property
    def negative(self) -> bool:
        """NXDOMAIN or NODATA: the SOA goes in the authority section."""
        return self.rcode != dns.rcode.NOERROR or not self.answer


class ClusterZone:
    """The in-memory zone for ``zone`` (e.g. cluster.local.) built from cluster objects."""

    def __init__(self, zone: str = "cluster.local", ttl: int = 30, pods: str = "insecure",
                 nameserver_ips: Iterable[str] = ()):
        self.origin = dns.name.from_text(zone).canonicalize()
        self.ttl = ttl
        self.pods_mode = pods
        self.default_ns_ips = tuple(nameserver_ips)
        self.services: dict[tuple[str, str], ServiceInfo] = {}
        # (namespace, service) -> slice name -> ready endpoints of that slice
        self.endpoints: dict[tuple[str, str], dict[str, tuple[EndpointInfo, ...]]] = {}
        self.slice_owner: dict[tuple[str, str], str] = {}  # (namespace, slice) -> service
        self.namespaces: set[str] = set()
        self.services_per_ns: dict[str, int] = {}
        # ip -> services it belongs to (as ClusterIP or endpoint): the PTR index
        self.by_ip: dict[str, tuple] = {}  # a (ns, name) key, or a tuple of them
        self.pod_ips: dict[tuple[str, str], int] = {}  # (namespace, ip) -> pods with it
        self.serial = int(time.time())
        self._svc_suffix = dns.name.Name((b"svc",) + self.origin.labels)
        self._ns_name = dns.name.Name((b"ns", b"dns") + self.origin.labels)

    # ------------------------------------------------------------------ updates
    def _changed(self) -> None:
        self.serial = max(self.serial + 1, int(time.time())) & 0xFFFFFFFF

    def _ips_of(self, key: tuple[str, str]) -> set[str]:
        ips: set[str] = set()
        svc = self.services.get(key)
        if svc:
            ips.update(svc.cluster_ips)
        for eps in self.endpoints.get(key, {}).values():
            ips.update(e.ip for e in eps)
        return ips

    def _reindex_ips(self, key: tuple[str, str], before: set[str]) -> set[str]:
        after = self._ips_of(key)
        for ip in before - after:
            rest = tuple(o for o in self.owners_of(ip) if o != key)
            if len(rest) > 1:
                self.by_ip[ip] = rest
            elif rest:
                self.by_ip[ip] = rest[0]
            else:
                self.by_ip.pop(ip, None)
        for ip in after - before:
            owners = self.owners_of(ip)
            # Nearly every IP has one owner: store that key itself, a tuple of keys only when
            # shared (50k sets would cost ~10 MB, 50k 1-tuples ~3 MB).
            self.by_ip[ip] = owners + (key,) if owners else key
        return before | after

    def owners_of(self, ip: str) -> tuple[tuple[str, str], ...]:
        """The services an IP belongs to (as ClusterIP or endpoint)."""
        v = self.by_ip.get(ip)
        if v is None:
            return ()
        return (v,) if type(v[0]) is str else v

    def _deps_for(self, key: tuple[str, str], ips: set[str]) -> set:
        deps: set = {("svc", *key)}
        deps.update(("ip", ip) for ip in ips)
        if key == ("kube-system", "kube-dns"):
            deps.add(("dns",))
        return deps

    def set_service(self, namespace: str, name: str, info: ServiceInfo | None) -> set:
        """Add, replace or (info=None) delete a service; returns the dependencies touched."""
        key = (namespace, name)
        before = self._ips_of(key)
        ns_existed = self.namespace_exists(namespace)
        old = self.services.get(key)
        if info is None:
            if old is None:
                return set()
            del self.services[key]
            self.services_per_ns[namespace] -= 1
            if not self.services_per_ns[namespace]:
                del self.services_per_ns[namespace]
        else:
            if old == info:
                return set()
            self.services[key] = info
            if old is None:
                self.services_per_ns[namespace] = self.services_per_ns.get(namespace, 0) + 1
        ips = self._reindex_ips(key, before)
        self._changed()
        deps = self._deps_for(key, ips)
        if ns_existed != self.namespace_exists(namespace):
            deps.add(("namespace", namespace))
        return deps

    def set_slice(self, namespace: str, slice_name: str, service: str | None,
                  endpoints: tuple[EndpointInfo, ...] | None) -> set:
        """Add, replace or (endpoints=None) delete one EndpointSlice's ready endpoints."""
        skey = (namespace, slice_name)
        touched: set = set()
        old_owner = self.slice_owner.get(skey)
        if old_owner is not None and (endpoints is None or old_owner != service):
            key = (namespace, old_owner)
            before = self._ips_of(key)
            per = self.endpoints.get(key, {})
            per.pop(slice_name, None)
            if not per:
                self.endpoints.pop(key, None)
            del self.slice_owner[skey]
            touched |= self._deps_for(key, self._reindex_ips(key, before))
        if endpoints is not None and service:
            key = (namespace, service)
            per = self.endpoints.setdefault(key, {})
            if per.get(slice_name) != endpoints or old_owner != service:
                before = self._ips_of(key)
                per[slice_name] = endpoints
                self.slice_owner[skey] = service
                touched |= self._deps_for(key, self._reindex_ips(key, before))
        if touched:
            self._changed()
        return touched

    def set_namespace(self, name: str, exists: bool) -> set:
        if (name in self.namespaces) == exists:
            return set()
        (self.namespaces.add if exists else self.namespaces.discard)(name)
        self._changed()
        return {("namespace", name)}

    def set_pod_ip(self, namespace: str, ip: str, delta: int) -> set:
        """Count a pod IP in (delta=+1) or out (-1); only used with --pods verified."""
        k = (namespace, ip)
        n = self.pod_ips.get(k, 0) + delta
        if n > 0:
            self.pod_ips[k] = n
        else:
            self.pod_ips.pop(k, None)
        self._changed()
        return {("pod", namespace, ip)}

    # ------------------------------------------------------------------ reads
    def in_zone(self, qname: dns.name.Name) -> bool:
        return qname.is_subdomain(self.origin)

    def namespace_exists(self, ns: str) -> bool:
        return ns in self.namespaces or ns in self.services_per_ns

    def soa(self) -> dns.rrset.RRset:
        """The SOA CoreDNS puts in negative answers: ns.dns.<zone> hostmaster.<zone> serial 7200 1800 86400 ttl."""
        rd = dns.rdtypes.ANY.SOA.SOA(IN, SOA, self._ns_name, dns.name.Name((b"hostmaster",) + self.origin.labels),
                                     self.serial, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, self.ttl)
        return _rrset(self.origin, SOA, self.ttl, [rd])

    def nameserver_ips(self) -> tuple[str, ...]:
        """The addresses of ns.dns.<zone>: kube-system/kube-dns's ClusterIPs, else where we listen."""
        svc = self.services.get(("kube-system", "kube-dns"))
        if svc and svc.cluster_ips:
            return svc.cluster_ips
        return self.default_ns_ips

    def resolve(self, qname: dns.name.Name, qtype: int, depth: int = 0) -> Result:
        """Answer ``qname`` (already lowercased, inside the zone) for ``qtype``."""
        labels = [lb.decode("ascii", "replace") for lb in qname.relativize(self.origin).labels]
        n = len(labels)
        r = Result()
        if n == 0:
            return self._apex(qname, qtype, r)
        if n == 1 and labels[0] == "dns-version":
            if qtype in (TXT, ANY):
                r.answer.append(_rrset(qname, TXT, self.ttl, [dns.rdtypes.ANY.TXT.TXT(IN, TXT, [SPEC_VERSION])]))
            return r
        if labels[-1] == "dns":
            if n == 1:
                return r  # empty non-terminal above ns.dns
            if n == 2 and labels[0] == "ns":
                r.deps.add(("dns",))
                r.answer.extend(_addresses(qname, self.nameserver_ips(), qtype, self.ttl))
                return r
            r.rcode = dns.rcode.NXDOMAIN
            return r
        kind = labels[-1]
        if kind not in ("svc", "pod"):
            r.rcode = dns.rcode.NXDOMAIN
            return r
        if n == 1:
            return r  # svc.<zone> / pod.<zone>: NODATA
        ns = labels[-2]
        # Positive service answers need no namespace dependency (a service implies its
        # namespace); negative answers are dropped on every change anyway.
        if not self.namespace_exists(ns):
            r.rcode = dns.rcode.NXDOMAIN
            return r
        if n == 2:
            return r
        if kind == "pod":
            if n != 3:
                r.rcode = dns.rcode.NXDOMAIN
                return r
            return self._pod(qname, ns, labels[0], qtype, r)
        if n > 5:
            r.rcode = dns.rcode.NXDOMAIN
            return r
        return self._service(qname, qtype, ns, labels, r, depth)

    def _apex(self, qname: dns.name.Name, qtype: int, r: Result) -> Result:
        if qtype in (SOA, ANY):
            r.answer.append(self.soa())
        if qtype in (NS, ANY):
            r.deps.add(("dns",))
            r.answer.append(_rrset(qname, NS, self.ttl, [dns.rdtypes.ANY.NS.NS(IN, NS, self._ns_name)]))
            r.additional.extend(_addresses(self._ns_name, self.nameserver_ips(), ANY, self.ttl))
        return r

    def _pod(self, qname: dns.name.Name, ns: str, label: str, qtype: int, r: Result) -> Result:
        r.deps.add(("namespace", ns))
        if self.pods_mode == "disabled":
            r.rcode = dns.rcode.NXDOMAIN
            return r
        text = label.replace("-", ".") if label.count("-") == 3 and "--" not in label else label.replace("-", ":")
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            r.rcode = dns.rcode.NXDOMAIN
            return r
        if self.pods_mode == "verified":
            r.deps.add(("pod", ns, str(ip)))
            if (ns, str(ip)) not in self.pod_ips:
                r.rcode = dns.rcode.NXDOMAIN
                return r
        r.answer.extend(_addresses(qname, (str(ip),), qtype, self.ttl))
        return r

    def _service(self, qname: dns.name.Name, qtype: int, ns: str, labels: list[str], r: Result,
                 depth: int = 0) -> Result:
        n = len(labels)
        name = labels[-3]
        key = (ns, name)
        r.deps.add(("svc", ns, name))
        svc = self.services.get(key)
        if svc is None:
            r.rcode = dns.rcode.NXDOMAIN
            return r
        endpoint = labels[0] if n == 4 else None
        port = proto = ""
        if n == 5:
            port, proto = _strip(labels[0]), _strip(labels[1])
        base = dns.name.Name((name.encode(), ns.encode()) + self._svc_suffix.labels)

        if svc.external_name is not None:
            if n != 3:
                r.rcode = dns.rcode.NXDOMAIN
                return r
            return self._external(qname, qtype, svc, r, depth)

        # (target name, ip, port or None) in CoreDNS's msg.Service sense
        items: list[tuple[dns.name.Name, str, int | None]] = []
        if svc.headless or endpoint is not None:
            for eps in self.endpoints.get(key, {}).values():
                for ep in eps:
                    if endpoint is not None and ep.label.lower() != endpoint:
                        continue
                    target = dns.name.Name((ep.label.lower().encode(),) + base.labels)
                    if not ep.ports:
                        if not port and not proto:  # CoreDNS's port -1 sentinel: addresses but no SRV
                            items.append((target, ep.ip, None))
                        continue
                    for p in ep.ports:
                        if _match(port, p.name) and _match(proto, p.protocol):
                            items.append((target, ep.ip, p.port))
        else:
            for p in svc.ports:
                if _match(port, p.name) and _match(proto, p.protocol):
                    for ip in svc.cluster_ips:
                        items.append((base, ip, p.port))
        if not items:
            r.rcode = dns.rcode.NXDOMAIN
            return r
        if qtype in (A, AAAA, ANY):
            r.answer.extend(_addresses(qname, _unique(ip for _, ip, _ in items), qtype, self.ttl))
        elif qtype == SRV:
            self._srv(qname, items, r)
        return r

    def _srv(self, qname: dns.name.Name, items: list, r: Result) -> None:
        with_port = [it for it in items if it[2] is not None]
        if not with_port:
            return
        # CoreDNS: every record weighs 100, then each gets floor(100 / n) of its priority.
        weight = max(1, 100 // len(with_port))
        seen: set = set()
        rdatas = []
        glue: dict[dns.name.Name, list[str]] = {}
        for target, ip, port in with_port:
            if (target, port) not in seen:
                seen.add((target, port))
                rdatas.append(dns.rdtypes.IN.SRV.SRV(IN, SRV, 0, weight, port, target))
            if ip not in glue.setdefault(target, []):
                glue[target].append(ip)
        r.answer.append(_rrset(qname, SRV, self.ttl, rdatas))
        for target, ips in glue.items():
            r.additional.extend(_addresses(target, ips, ANY, self.ttl))

    def _external(self, qname: dns.name.Name, qtype: int, svc: ServiceInfo, r: Result,
                  depth: int) -> Result:
        try:
            target = dns.name.from_text(svc.external_name.rstrip(".") + ".")
        except dns.exception.DNSException:
            r.rcode = dns.rcode.NXDOMAIN
            return r
        r.answer.append(_rrset(qname, CNAME, self.ttl, [dns.rdtypes.ANY.CNAME.CNAME(IN, CNAME, target)]))
        if qtype in (CNAME, ANY):
            return r
        low = target.canonicalize()
        if self.in_zone(low):
            # Chase inside the zone (bounded: ExternalNames may point at each other).
            if depth < 8:
                sub = self.resolve(low, qtype, depth + 1)
                r.deps |= sub.deps
                r.answer.extend(sub.answer)
                r.additional.extend(sub.additional)
                r.chase = sub.chase
                if sub.rcode == dns.rcode.NXDOMAIN:
                    r.rcode = sub.rcode
        else:
            r.chase = target
        return r

    def reverse(self, qname: dns.name.Name) -> Result | None:
        """PTR for a ClusterIP or endpoint IP; None when the IP is not the cluster's (forward it)."""
        try:
            ip = str(ipaddress.ip_address(dns.reversename.to_address(qname)))
        except Exception:
            return None
        owners = self.owners_of(ip)
        if not owners:
            return None
        targets: list[dns.name.Name] = []
        for ns, name in sorted(owners):
            base = dns.name.Name((name.encode(), ns.encode()) + self._svc_suffix.labels)
            svc = self.services.get((ns, name))
            if svc and ip in svc.cluster_ips:
                targets.append(base)
            for eps in self.endpoints.get((ns, name), {}).values():
                for ep in eps:
                    if ep.ip == ip:
                        targets.append(dns.name.Name((ep.label.lower().encode(),) + base.labels))
        r = Result(deps={("ip", ip)} | {("svc", *o) for o in owners})
        rdatas = [dns.rdtypes.ANY.PTR.PTR(IN, PTR, t) for t in _unique(targets)]
        r.answer.append(_rrset(qname, PTR, self.ttl, rdatas))
        return r


def is_reverse(qname: dns.name.Name) -> bool:
    return qname.is_subdomain(_REVERSE_V4) or qname.is_subdomain(_REVERSE_V6)


def _strip(label: str) -> str:
    return label[1:] if label.startswith("_") else label


def _match(want: str, have: str | None) -> bool:
    """CoreDNS matchPortAndProtocol: an absent port/protocol in the query matches anything."""
    return not want or want == (have or "").lower()


def _unique(items: Iterable) -> list:
    return list(dict.fromkeys(items))


def _rrset(name: dns.name.Name, rdtype: int, ttl: int, rdatas: list) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(name, IN, rdtype)
    rrset.update_ttl(ttl)
    for rd in rdatas:
        rrset.add(rd)
    return rrset


def _addresses(name: dns.name.Name, ips: Iterable[str], qtype: int, ttl: int) -> list[dns.rrset.RRset]:
    """A and/or AAAA RRsets for ``ips`` as ``qtype`` asks (ANY gives both)."""
    v4 = [ip for ip in ips if ":" not in ip]
    v6 = [ip for ip in ips if ":" in ip]
    out = []
    if v4 and qtype in (A, ANY):
        out.append(_rrset(name, A, ttl, [dns.rdtypes.IN.A.A(IN, A, ip) for ip in v4]))
    if v6 and qtype in (AAAA, ANY):
        out.append(_rrset(name, AAAA, ttl, [dns.rdtypes.IN.AAAA.AAAA(IN, AAAA, ip) for ip in v6]))
    return out
