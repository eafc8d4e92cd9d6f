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
from typing import Callable, Iterable

from lightkube import AsyncClient
from lightkube.resources.core_v1 import Namespace, Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice

from kubesvc.client import Informer
from kubesvc.dns.records import ClusterZone, EndpointInfo, PortInfo, ServiceInfo

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def service_info(svc) -> ServiceInfo:
    """The DNS view of a lightkube Service."""
    md, spec = svc.metadata, svc.spec
    ports = tuple(PortInfo(p.name or "", (p.protocol or "TCP"), p.port) for p in (spec.ports or ()))
    if (spec.type or "ClusterIP") == "ExternalName":
        return ServiceInfo(md.namespace, md.name, external_name=spec.externalName or "", ports=ports)
    ips = tuple(spec.clusterIPs or ([spec.clusterIP] if spec.clusterIP else []))
    headless = spec.clusterIP == "None" or ips == ("None",)
    if headless:
        ips = ()
    return ServiceInfo(md.namespace, md.name, cluster_ips=ips, headless=headless, ports=ports)


def slice_endpoints(es) -> tuple[EndpointInfo, ...]:
    """Ready endpoints of a lightkube EndpointSlice (ready unset counts as ready, as in CoreDNS)."""
    if es.addressType not in ("IPv4", "IPv6"):
        return ()  # FQDN slices are not published in DNS
    ports = tuple(PortInfo(p.name or "", p.protocol or "TCP", p.port) for p in (es.ports or ()) if p.port)
    out = []
    for ep in es.endpoints or ():
        cond = ep.conditions
        if cond is not None and cond.ready is False:
            continue
        for ip in ep.addresses or ():
            out.append(EndpointInfo(ip, ep.hostname or None, ports))
    return tuple(out)


class ZoneFeeder:
    """Keeps a ClusterZone true to the API and reports touched dependencies to ``on_change``."""

    def __init__(self, client: AsyncClient, zone: ClusterZone, on_change: Callable[[set], None]):
        self.zone = zone
        self.on_change = on_change
        self.informers: list[Informer] = [Informer(client, Namespace), Informer(client, Service),
                                          Informer(client, EndpointSlice)]
        ns_inf, svc_inf, es_inf = self.informers
        ns_inf.add_handler(on_add=self._ns_add, on_update=lambda o, n: self._ns_add(n), on_delete=self._ns_del)
        svc_inf.add_handler(on_add=self._svc_set, on_update=lambda o, n: self._svc_set(n), on_delete=self._svc_del)
        es_inf.add_handler(on_add=self._es_set, on_update=self._es_update, on_delete=self._es_del)
        if zone.pods_mode == "verified":
            pod_inf = Informer(client, Pod)
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

    def _svc_set(self, svc) -> None:
        self._apply(self.zone.set_service(svc.metadata.namespace, svc.metadata.name, service_info(svc)))

    def _svc_del(self, svc) -> None:
        self._apply(self.zone.set_service(svc.metadata.namespace, svc.metadata.name, None))

    def _es_set(self, es) -> None:
        md = es.metadata
        owner = (md.labels or {}).get(SERVICE_NAME_LABEL)
        self._apply(self.zone.set_slice(md.namespace, md.name, owner, slice_endpoints(es)))

    def _es_update(self, old, new) -> None:
        self._es_set(new)

    def _es_del(self, es) -> None:
        self._apply(self.zone.set_slice(es.metadata.namespace, es.metadata.name, None, None))

    def _pod_ips(self, pod) -> Iterable[str]:
        st = pod.status
        if st is None:
            return ()
        ips = [p.ip for p in (st.podIPs or ()) if p.ip]
        if not ips and st.podIP:
            ips = [st.podIP]
        return ips

    def _pod(self, pod, delta: int) -> None:
        deps: set = set()
        for ip in self._pod_ips(pod):
            deps |= self.zone.set_pod_ip(pod.metadata.namespace, ip, delta)
        self._apply(deps)

    def _pod_update(self, old, new) -> None:
        if list(self._pod_ips(old)) != list(self._pod_ips(new)):
            self._pod(old, -1)
            self._pod(new, +1)
