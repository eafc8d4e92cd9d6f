"""Where the zone's data comes from: informers on Services, EndpointSlices, Namespaces (and Pods).

Each informer event is reduced to the few fields DNS needs (``ServiceInfo``,
``EndpointInfo``) and applied to the ``ClusterZone``; the dependencies the zone
reports as touched are dropped from the answer cache at once, so an API write is
answered correctly as soon as its watch event arrives. Pods are watched only for
``--pods verified``, as CoreDNS does.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Callable

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Namespace, Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice

from kubesvc.client import Informer
from kubesvc.dns.records import ClusterZone, EndpointInfo, PortInfo, ServiceInfo

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


_PORTS: dict[tuple, tuple[PortInfo, ...]] = {}


def _ports(items: tuple[PortInfo, ...]) -> tuple[PortInfo, ...]:
    """One shared tuple per distinct port list (thousands of services have the same ports)."""
    if len(_PORTS) > 10_000:
        _PORTS.clear()
    return _PORTS.setdefault(items, items)


def service_info(svc) -> ServiceInfo:
    """The DNS view of a lightkube Service."""
    md, spec = svc.metadata, svc.spec
    ports = _ports(tuple(PortInfo(p.name or "", (p.protocol or "TCP"), p.port) for p in (spec.ports or ())))
    ns = sys.intern(md.namespace or "")
    if (spec.type or "ClusterIP") == "ExternalName":
        return ServiceInfo(ns, md.name, external_name=spec.externalName or "", ports=ports)
    ips = tuple(spec.clusterIPs or ([spec.clusterIP] if spec.clusterIP else []))
    headless = spec.clusterIP == "None" or ips == ("None",)
    if headless:
        ips = ()
    return ServiceInfo(ns, md.name, cluster_ips=ips, headless=headless, ports=ports)


def slice_endpoints(es) -> tuple[EndpointInfo, ...]:
    """Ready endpoints of a lightkube EndpointSlice (ready unset counts as ready, as in CoreDNS)."""
    if es.addressType not in ("IPv4", "IPv6"):
        return ()  # FQDN slices are not published in DNS
    ports = _ports(tuple(PortInfo(p.name or "", p.protocol or "TCP", p.port) for p in (es.ports or ()) if p.port))
    out = []
    for ep in es.endpoints or ():
        cond = ep.conditions
        if cond is not None and cond.ready is False:
            continue
        for ip in ep.addresses or ():
            out.append(EndpointInfo(ip, ep.hostname or None, ports))
    return tuple(out)


class LeanMeta:
    """The metadata an informer needs to key and diff an object, and nothing else."""

    __slots__ = ("name", "namespace", "resourceVersion")

    def __init__(self, md):
        self.name, self.namespace, self.resourceVersion = md.name, md.namespace, md.resourceVersion


class Lean:
    """What the informers cache instead of whole objects: metadata plus the DNS view.

    Whole lightkube objects (managedFields included) cost ~8 KB per service+slice;
    10,000 services would hold ~80 MB of them for nothing. ``data`` is the same
    object the zone keeps, so it is stored once.
    """

    __slots__ = ("metadata", "data")

    def __init__(self, obj, data):
        self.metadata = LeanMeta(obj.metadata)
        self.data = data


def _lean_service(svc) -> Lean:
    return Lean(svc, service_info(svc))


def _lean_slice(es) -> Lean:
    owner = (es.metadata.labels or {}).get(SERVICE_NAME_LABEL)
    return Lean(es, (owner, slice_endpoints(es)))


def _lean_namespace(ns) -> Lean:
    return Lean(ns, None)


def _lean_pod(pod) -> Lean:
    st = pod.status
    ips: tuple[str, ...] = ()
    if st is not None:
        ips = tuple(p.ip for p in (st.podIPs or ()) if p.ip) or ((st.podIP,) if st.podIP else ())
    return Lean(pod, ips)


class ZoneFeeder:
    """Keeps a ClusterZone true to the API and reports touched dependencies to ``on_change``."""

    def __init__(self, client: AsyncClient, zone: ClusterZone, on_change: Callable[[set], None]):
        self.zone = zone
        self.on_change = on_change
        # Lists come in pages of 500 so the first one never sits in memory whole.
        self.informers: list[Informer] = [
            Informer(client, Namespace, transform=_lean_namespace, chunk_size=500),
            Informer(client, Service, transform=_lean_service, chunk_size=500),
            Informer(client, EndpointSlice, transform=_lean_slice, chunk_size=500)]
        ns_inf, svc_inf, es_inf = self.informers
        ns_inf.add_handler(on_add=self._ns_add, on_update=lambda o, n: self._ns_add(n), on_delete=self._ns_del)
        svc_inf.add_handler(on_add=self._svc_set, on_update=lambda o, n: self._svc_set(n), on_delete=self._svc_del)
        es_inf.add_handler(on_add=self._es_set, on_update=self._es_update, on_delete=self._es_del)
        if zone.pods_mode == "verified":
            pod_inf = Informer(client, Pod, transform=_lean_pod, chunk_size=500)
            pod_inf.add_handler(on_add=lambda p: self._pod(p, +1), on_update=self._pod_update,
                                on_delete=lambda p: self._pod(p, -1))
            self.informers.append(pod_inf)

    def start(self) -> None:
        for inf in self.informers:
            inf.start()

    @property
    def synced(self) -> bool:
        return all(inf.has_synced for inf in self.informers)

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(asyncio.gather(*(inf.wait_synced() for inf in self.informers)), timeout)

    async def stop(self) -> None:
        for inf in self.informers:
            await inf.stop()

    def _apply(self, deps: set) -> None:
        if deps:
            self.on_change(deps)

    # --- handlers (run on the loop; must be quick) ------------------------------
    def _ns_add(self, ns) -> None:
        self._apply(self.zone.set_namespace(ns.metadata.name, True))

    def _ns_del(self, ns) -> None:
        self._apply(self.zone.set_namespace(ns.metadata.name, False))

    def _svc_set(self, svc: Lean) -> None:
        self._apply(self.zone.set_service(svc.metadata.namespace, svc.metadata.name, svc.data))

    def _svc_del(self, svc: Lean) -> None:
        self._apply(self.zone.set_service(svc.metadata.namespace, svc.metadata.name, None))

    def _es_set(self, es: Lean) -> None:
        owner, endpoints = es.data
        self._apply(self.zone.set_slice(es.metadata.namespace, es.metadata.name, owner, endpoints))

    def _es_update(self, old: Lean, new: Lean) -> None:
        self._es_set(new)

    def _es_del(self, es: Lean) -> None:
        self._apply(self.zone.set_slice(es.metadata.namespace, es.metadata.name, None, None))

    def _pod(self, pod: Lean, delta: int) -> None:
        deps: set = set()
        for ip in pod.data:
            deps |= self.zone.set_pod_ip(pod.metadata.namespace, ip, delta)
        self._apply(deps)

    def _pod_update(self, old: Lean, new: Lean) -> None:
        if old.data != new.data:
            self._pod(old, -1)
            self._pod(new, +1)
