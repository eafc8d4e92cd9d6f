"""ClusterIP and NodePort allocation for Services, atomic with the store write, and the
built-in services (default/kubernetes, kube-system/kube-dns).

What kube-apiserver spreads over pkg/registry/core/service/{ipallocator,portallocator,
storage/alloc.go} and the repair controllers lives here:

- :class:`IPRange` / :class:`PortRange`: the pools (``--service-cidr``,
  ``--service-node-port-range``), each remembering which service holds which value.
  Random allocation prefers the upper part of a pool and leaves the lower "static"
  band (where people pick addresses by hand, e.g. kube-dns's 10.96.0.10) for last,
  as kube-apiserver's offset allocators do.
- :class:`ServiceAdmission`: reserves what a create/update needs *before* the write
  and returns a ``finish`` that keeps (write done) or gives back (write failed)
  exactly that reservation. Reservation happens without awaiting, so on one event
  loop two concurrent requests for the same address can never both win.
- :meth:`ServiceAdmission.repair`: rebuilds the pools from the stored services at
  start-up and reports anything held twice or outside its pool.
"""

from __future__ import annotations

import ipaddress
import random
import socket
from dataclasses import dataclass, field
from typing import Callable

from kubesvc.objects import service as svc  # registers the Service strategy
from kubesvc.objects.errors import FieldError, internal_error, invalid, invalid_object
from kubesvc.objects.strategy import Finish

__all__ = ["IPRange", "PortRange", "ServiceAdmission", "builtin_objects", "AllocationError"]


class AllocationError(Exception):
    """A pool refused a value; the text is kube-apiserver's allocator error."""


class RangeFull(AllocationError):
    def __init__(self) -> None:
        super().__init__("range is full")


def _static_offset(size: int, lo: int, hi: int, step: int) -> int:
    """calculateRangeOffset: min(max(lo, size/step), hi), 0 for tiny pools."""
    if size <= lo:
        return 0
    return min(max(lo, size // step), hi)


class _Pool:
    """A bitmap-like pool of `size` slots, each free or held by an owner ("ns/name")."""

    def __init__(self, size: int, static_band: int):
        self.size = size
        self.static_band = static_band  # slots [0, static_band) are handed out last
        self.owner: dict[int, str] = {}
        self._rng = random.Random()

    def free(self) -> int:
        return self.size - len(self.owner)

    def take(self, slot: int, owner: str) -> bool:
        if slot in self.owner:
            return False
        self.owner[slot] = owner
        return True

    def take_next(self, owner: str, exclude: Callable[[int], bool] = lambda s: False) -> int:
        """A random free slot: first from the dynamic band, then from the static band."""
        for lo, hi in ((self.static_band, self.size), (0, self.static_band)):
            n = hi - lo
            if n <= 0:
                continue
            # Random probes find a free slot at once while the band is sparse; a scan
            # from a random start (what the Go bitmap does) settles the dense case.
            for _ in range(16):
                s = lo + self._rng.randrange(n)
                if s not in self.owner and not exclude(s):
                    self.owner[s] = owner
                    return s
            start = self._rng.randrange(n)
            for i in range(n):
                s = lo + (start + i) % n
                if s not in self.owner and not exclude(s):
                    self.owner[s] = owner
                    return s
        raise RangeFull()

    def release(self, slot: int, owner: str | None = None) -> None:
        if owner is None or self.owner.get(slot) == owner:
            self.owner.pop(slot, None)


class IPRange:
    """The service CIDR: every address but the network and (IPv4) broadcast ones."""

    def __init__(self, cidr: str):
        self.network = ipaddress.ip_network(cidr, strict=False)
        self.cidr = str(self.network)
        total = self.network.num_addresses
        size = total - 1 - (1 if self.network.version == 4 else 0)
        if self.network.version == 6:
            size = min(size, 65536)
        self.base = int(self.network.network_address) + 1
        self._af = socket.AF_INET6 if self.network.version == 6 else socket.AF_INET
        self.pool = _Pool(max(size, 0), _static_offset(total, 16, 256, 16))

    def nth(self, n: int) -> str:
        """The n-th address of the range (1 = the first usable: the kubernetes service's)."""
        return str(ipaddress.ip_address(int(self.network.network_address) + n))

    def _slot(self, ip: str) -> int | None:
        # inet_pton is ~10x faster than ipaddress and this runs once per service at repair.
        try:
            packed = socket.inet_pton(self._af, ip)
        except (OSError, TypeError, ValueError):
            return None
        s = int.from_bytes(packed, "big") - self.base
        return s if 0 <= s < self.pool.size else None

    def contains(self, ip: str) -> bool:
        return self._slot(ip) is not None

    def allocate(self, ip: str, owner: str) -> None:
        s = self._slot(ip)
        if s is None:
            raise AllocationError(f"the provided IP ({ip}) is not in the valid range. "
                                  f"The range of valid IPs is {self.cidr}")
        if not self.pool.take(s, owner):
            raise AllocationError("provided IP is already allocated")

    def allocate_next(self, owner: str) -> str:
        # The first address belongs to the kubernetes service: never hand it out at random.
        s = self.pool.take_next(owner, exclude=lambda slot: slot == 0)
        return str(ipaddress.ip_address(self.base + s))

    def release(self, ip: str, owner: str | None = None) -> None:
        s = self._slot(ip)
        if s is not None:
            self.pool.release(s, owner)

    def holder(self, ip: str) -> str | None:
        s = self._slot(ip)
        return None if s is None else self.pool.owner.get(s)

    def used(self) -> int:
        return len(self.pool.owner)


class PortRange:
    """The NodePort range, e.g. "30000-32767" (both ends included)."""

    def __init__(self, spec: str):
        lo, _, hi = spec.partition("-")
        self.base = int(lo)
        last = int(hi) if hi else self.base
        if last < self.base:
            raise ValueError(f"invalid port range {spec!r}")
        self.spec = f"{self.base}-{last}"
        size = last - self.base + 1
        self.pool = _Pool(size, _static_offset(size, 16, 128, 32))

    def contains(self, port: int) -> bool:
        return 0 <= port - self.base < self.pool.size

    def allocate(self, port: int, owner: str) -> None:
        if not self.contains(port):
            raise AllocationError("provided port is not in the valid range. "
                                  f"The range of valid ports is {self.spec}")
        if not self.pool.take(port - self.base, owner):
            raise AllocationError("provided port is already allocated")

    def allocate_next(self, owner: str) -> int:
        return self.base + self.pool.take_next(owner)

    def release(self, port: int, owner: str | None = None) -> None:
        if self.contains(port):
            self.pool.release(port - self.base, owner)

    def holder(self, port: int) -> str | None:
        return self.pool.owner.get(port - self.base) if self.contains(port) else None

    def used(self) -> int:
        return len(self.pool.owner)


# -- what a service holds ------------------------------------------------------------------

def _key(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"


def held_ips(obj: dict | None) -> list[str]:
    """The cluster IPs a stored service holds (none for ExternalName or headless)."""
    if not obj or svc.spec_of(obj).get("type") == svc.EXTERNAL_NAME:
        return []
    return [ip for ip in svc.cluster_ips(obj) if ip and ip != svc.NONE]


def held_ports(obj: dict | None) -> list[int]:
    """The node ports a stored service holds: its ports' nodePorts and healthCheckNodePort."""
    if not obj:
        return []
    spec = svc.spec_of(obj)
    out: list[int] = []
    if svc.needs_node_port(obj):
        for p in spec.get("ports") or []:
            n = svc._int(p.get("nodePort"))
            if n and n not in out:
                out.append(n)
    hc = svc._int(spec.get("healthCheckNodePort"))
    if hc and hc not in out and svc.needs_health_check(obj):
        out.append(hc)
    return out


@dataclass
class _Reservation:
    """What one admit took from the pools, to keep or give back."""

    owner: str
    ips: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    release_ips_on_commit: list[str] = field(default_factory=list)
    release_ports_on_commit: list[int] = field(default_factory=list)


def _noop(ok: bool) -> None:
    return None


class ServiceAdmission:
    """Allocates ClusterIPs and NodePorts with a Service write (kubesvc.objects.strategy.Admission)."""

    def __init__(self, service_cidr: str = "10.96.0.0/12", node_port_range: str = "30000-32767"):
        global _configured_cidr
        _configured_cidr = service_cidr  # what builtin_objects() derives addresses from by default
        self.ips = IPRange(service_cidr)
        self.ports = PortRange(node_port_range)
        self.family = "IPv6" if self.ips.network.version == 6 else "IPv4"
        svc.cluster_ip_family = self.family  # services asking for no family get this one

    # -- admission ---------------------------------------------------------------------

    async def admit(self, operation: str, obj: dict | None, old: dict | None) -> Finish:
        if operation == "CREATE" and obj is not None:
            res = self._allocate(obj, None)
        elif operation == "UPDATE" and obj is not None:
            res = self._allocate(obj, old)
        elif operation == "DELETE" and old is not None:
            res = _Reservation(_key(old), release_ips_on_commit=held_ips(old),
                               release_ports_on_commit=held_ports(old))
        else:
            return _noop
        return self._finisher(res)

    def _finisher(self, res: _Reservation) -> Finish:
        done = False

        def finish(ok: bool) -> None:
            nonlocal done
            if done:  # finishing twice must not free what someone else took since
                return
            done = True
            if ok:
                for ip in res.release_ips_on_commit:
                    self.ips.release(ip, res.owner)
                for port in res.release_ports_on_commit:
                    self.ports.release(port, res.owner)
            else:
                self._undo(res)

        return finish

    def _undo(self, res: _Reservation) -> None:
        for ip in res.ips:
            self.ips.release(ip, res.owner)
        for port in res.ports:
            self.ports.release(port, res.owner)

    def _allocate(self, obj: dict, old: dict | None) -> _Reservation:
        """Reserve everything obj needs beyond what old already holds; all or nothing."""
        res = _Reservation(_key(obj))
        try:
            self._check_families(obj)
            self._allocate_cluster_ips(obj, old, res)
            self._allocate_node_ports(obj, old, res)
        except BaseException:
            self._undo(res)
            raise
        if old is not None:
            new_ips, new_ports = set(held_ips(obj)), set(held_ports(obj))
            res.release_ips_on_commit = [ip for ip in held_ips(old) if ip not in new_ips]
            res.release_ports_on_commit = [p for p in held_ports(old) if p not in new_ports]
        return res

    def _check_families(self, obj: dict) -> None:
        """The part of initIPFamilyFields that needs to know the cluster: families it serves."""
        spec = svc.spec_of(obj)
        if spec.get("type") == svc.EXTERNAL_NAME:
            return
        if spec.get("clusterIP") == svc.NONE and not spec.get("selector"):
            return  # headless without selector may name any families, even on a single-stack cluster
        name = (obj.get("metadata") or {}).get("name", "")
        errs: list[FieldError] = []
        if spec.get("ipFamilyPolicy") == "RequireDualStack":
            errs.append(invalid("spec.ipFamilyPolicy", "RequireDualStack",
                                "this cluster is not configured for dual-stack services"))
        for i, fam in enumerate(spec.get("ipFamilies") or []):
            if fam != self.family:
                errs.append(invalid(f"spec.ipFamilies[{i}]", fam, "not configured on this cluster"))
        if errs:
            raise invalid_object("Service", name, errs)

    def _allocate_cluster_ips(self, obj: dict, old: dict | None, res: _Reservation) -> None:
        spec = obj["spec"]
        if spec.get("type") == svc.EXTERNAL_NAME or svc.is_headless(obj):
            return
        old_ips = set(held_ips(old))
        requested = [ip for ip in spec.get("clusterIPs") or [] if ip]
        name = (obj.get("metadata") or {}).get("name", "")
        if not requested:
            try:
                ip = self.ips.allocate_next(res.owner)
            except RangeFull as e:
                raise internal_error(f"failed to allocate a serviceIP: {e}")
            res.ips.append(ip)
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]
            return
        for ip in requested[:1]:  # single-stack: one address per service
            if ip in old_ips:
                continue  # already this service's
            try:
                self.ips.allocate(ip, res.owner)
            except AllocationError as e:
                raise invalid_object("Service", name, [invalid(
                    "spec.clusterIPs", svc.go_strings(spec.get("clusterIPs")), f"failed to allocate IP {ip}: {e}")])
            res.ips.append(ip)
        spec["clusterIP"] = requested[0]
        spec["clusterIPs"] = requested[:1]

    def _allocate_node_ports(self, obj: dict, old: dict | None, res: _Reservation) -> None:
        spec = obj["spec"]
        name = (obj.get("metadata") or {}).get("name", "")
        old_ports = set(held_ports(old))
        mine: set[int] = set()  # node ports this service holds after this request

        def take(port: int, path: str) -> None:
            if port in mine:
                return
            if port not in old_ports:
                try:
                    self.ports.allocate(port, res.owner)
                except AllocationError as e:
                    raise invalid_object("Service", name, [invalid(path, port, str(e))])
                res.ports.append(port)
            mine.add(port)

        def take_next() -> int:
            try:
                port = self.ports.allocate_next(res.owner)
            except RangeFull as e:
                raise internal_error(f"failed to allocate a nodePort: {e}")
            res.ports.append(port)
            mine.add(port)
            return port

        if svc.needs_node_port(obj):
            ports = spec.get("ports") or []
            # Requested ports first, so a random pick never takes one asked for further down.
            by_service_port: dict[int, int] = {}
            for i, p in enumerate(ports):
                n = svc._int(p.get("nodePort"))
                if n:
                    take(n, f"spec.ports[{i}].nodePort")
                    by_service_port.setdefault(svc._int(p.get("port")), n)
            allocate = svc.should_allocate_node_ports(obj)
            for p in ports:
                if svc._int(p.get("nodePort")) or not allocate:
                    continue
                # TCP and UDP of one service port share a node port, as kube-apiserver does.
                sp = svc._int(p.get("port"))
                if sp in by_service_port:
                    p["nodePort"] = by_service_port[sp]
                else:
                    p["nodePort"] = by_service_port[sp] = take_next()

        if svc.needs_health_check(obj):
            hc = svc._int(spec.get("healthCheckNodePort"))
            if not hc:
                spec["healthCheckNodePort"] = take_next()
            elif hc in mine:  # already one of this service's node ports
                raise internal_error(f"failed to allocate requested HealthCheck NodePort {hc}: "
                                     "provided port is already allocated")
            elif hc in old_ports:
                mine.add(hc)
            else:
                try:
                    self.ports.allocate(hc, res.owner)
                except AllocationError as e:
                    raise internal_error(f"failed to allocate requested HealthCheck NodePort {hc}: {e}")
                res.ports.append(hc)
                mine.add(hc)

    # -- start-up ---------------------------------------------------------------------------

    def repair(self, services: list[dict]) -> list[str]:
        """Rebuild the pools from the stored services; return the problems found, for the log."""
        self.ips.pool.owner.clear()
        self.ports.pool.owner.clear()
        problems: list[str] = []
        for obj in services:
            owner = _key(obj)
            for ip in held_ips(obj):
                slot = self.ips._slot(ip)
                if slot is None:
                    problems.append(f"service {owner}: Cluster IP {ip} is not within the service CIDR "
                                    f"{self.ips.cidr}; please recreate service")
                elif not self.ips.pool.take(slot, owner):
                    problems.append(f"service {owner}: Cluster IP {ip} was assigned to multiple services "
                                    f"(also {self.ips.holder(ip)}); please recreate service")
            for port in held_ports(obj):
                if not self.ports.contains(port):
                    problems.append(f"service {owner}: Port {port} is not within the port range "
                                    f"{self.ports.spec}; please recreate service")
                    continue
                try:
                    self.ports.allocate(port, owner)
                except AllocationError:
                    problems.append(f"service {owner}: Port {port} was assigned to multiple services "
                                    f"(also {self.ports.holder(port)}); please recreate service")
        return problems

    def builtin_objects(self, api_host: str, api_port: int) -> list[dict]:
        return builtin_objects(api_host, api_port, self.ips.cidr)


# -- built-in services -------------------------------------------------------------------------

_configured_cidr = "10.96.0.0/12"


def builtin_objects(api_host: str, api_port: int, service_cidr: str | None = None) -> list[dict]:
    """default/kubernetes (+ its Endpoints and EndpointSlice) and kube-system/kube-dns, as
    kube-apiserver and kubeadm create them. Addresses derive from the service CIDR: the one
    given, else the one the last ServiceAdmission was built with."""
    r = IPRange(service_cidr or _configured_cidr)
    api_ip, dns_ip = r.nth(1), r.nth(10)
    family = "IPv6" if r.network.version == 6 else "IPv4"
    kubernetes = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": api_ip, "clusterIPs": [api_ip],
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}],
                 "sessionAffinity": "None"},
    }
    endpoints = {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": api_host}],
                     "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}]}],
    }
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": family,
        "endpoints": [{"addresses": [api_host], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}],
    }
    kube_dns = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                                "kubernetes.io/name": "CoreDNS"},
                     "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
        "spec": {"type": "ClusterIP", "clusterIP": dns_ip, "clusterIPs": [dns_ip],
                 "selector": {"k8s-app": "kube-dns"},
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                           {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]},
    }
    return [kubernetes, endpoints, slice_, kube_dns]
