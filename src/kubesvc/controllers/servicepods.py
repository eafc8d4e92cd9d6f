"""Which pods back a service, on which ports: the rules the Endpoints and EndpointSlice
controllers share (kube's pkg/controller/util/endpoint and podutil.FindPort).

Also the bookkeeping both need to react to pods: the services of a namespace whose
selector matches a pod, and whether a pod change can matter to endpoints at all.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable

from kubesvc.controllers.util import is_pod_ready, match_labels, pod_phase


def has_selector(svc: Any) -> bool:
    return bool(svc.spec and svc.spec.selector)


def target_port_of(sp: Any) -> int | str:
    tp = sp.targetPort
    if tp is None or tp == 0 or tp == "":
        return sp.port
    if isinstance(tp, str) and tp.isdigit():
        return int(tp)
    return tp


def find_port(pod: Any, sp: Any) -> int | None:
    """podutil.FindPort: a numeric targetPort as is; a named one looked up among the pod's
    container ports with the same protocol; None when the pod lacks it."""
    tp = target_port_of(sp)
    if isinstance(tp, int):
        return tp
    proto = sp.protocol or "TCP"
    for c in (pod.spec.containers if pod.spec else None) or ():
        for p in c.ports or ():
            if p.name == tp and (p.protocol or "TCP") == proto:
                return p.containerPort
    return None


def should_pod_be_in_endpoints(pod: Any, include_terminating: bool) -> bool:
    """endpointutil.ShouldPodBeInEndpoints: has an IP, not finished, not deleting (unless asked)."""
    if not pod_ip(pod):
        return False
    if pod_phase(pod) in ("Succeeded", "Failed"):
        return False
    if not include_terminating and pod.metadata.deletionTimestamp is not None:
        return False
    return True


def pod_ip(pod: Any, family: str | None = None) -> str | None:
    st = pod.status
    if st is None:
        return None
    ips = [p.ip for p in (st.podIPs or ()) if p.ip] or ([st.podIP] if st.podIP else [])
    if family is None:
        return ips[0] if ips else None
    want = 6 if family == "IPv6" else 4
    for ip in ips:
        try:
            if ipaddress.ip_address(ip).version == want:
                return ip
        except ValueError:
            continue
    return None


def pod_hostname(pod: Any, svc: Any) -> str | None:
    """A pod's hostname is published only when its subdomain names this service."""
    spec = pod.spec
    if spec and spec.hostname and spec.subdomain == svc.metadata.name \
            and (pod.metadata.namespace or "") == (svc.metadata.namespace or ""):
        return spec.hostname
    return None


def target_ref(pod: Any) -> dict:
    ref = {"kind": "Pod", "namespace": pod.metadata.namespace, "name": pod.metadata.name,
           "uid": pod.metadata.uid}
    return {k: v for k, v in ref.items() if v}


def endpoint_signature(pod: Any) -> tuple:
    """What of a pod can change endpoints; pod updates leaving it equal are ignored."""
    spec = pod.spec
    ports = tuple((c.name, p.name, p.containerPort, p.protocol)
                  for c in ((spec.containers if spec else None) or ()) for p in (c.ports or ()))
    st = pod.status
    return (pod.metadata.uid, tuple(sorted((pod.metadata.labels or {}).items())),
            pod.metadata.deletionTimestamp is not None, pod_phase(pod),
            st.podIP if st else None, tuple(p.ip for p in ((st.podIPs if st else None) or ())),
            is_pod_ready(pod), spec.nodeName if spec else None,
            spec.hostname if spec else None, spec.subdomain if spec else None, ports)


def services_for_pod(services: Iterable[Any], pod: Any) -> list[Any]:
    labels = pod.metadata.labels or {}
    return [s for s in services if has_selector(s) and match_labels(s.spec.selector, labels)]


def service_signature(svc: Any) -> tuple:
    """What of a service the endpoint controllers read."""
    spec = svc.spec
    if spec is None:
        return ()
    return (svc.metadata.uid, tuple(sorted((svc.metadata.labels or {}).items())),
            tuple(sorted((spec.selector or {}).items())), spec.type, spec.clusterIP,
            bool(spec.publishNotReadyAddresses), tuple(spec.ipFamilies or ()),
            tuple((p.name, p.port, str(p.targetPort), p.protocol, p.appProtocol)
                  for p in spec.ports or ()))


class ServicePodsWiring:
    """Informer wiring shared by the Endpoints and EndpointSlice controllers: a service
    key is queued when the service changes, or when a pod its selector matches (before
    or after the change) changes in a way endpoints can see."""

    queue: Any
    informers: Any

    def wire_services_and_pods(self) -> None:
        from lightkube.resources.core_v1 import Pod, Service
        self.services = self.informers.view(Service)
        self.pods = self.informers.view(Pod)
        self.service_selectors = self.informers.selector_index(
            Service, lambda s: s.spec.selector if s.spec else None)
        self.pod_labels = self.informers.label_index(Pod)
        svc_inf = self.informers.informer(Service)
        svc_inf.add_handler(
            on_add=self._svc_changed,
            on_update=lambda o, n: service_signature(o) != service_signature(n) and self._svc_changed(n),
            on_delete=self._svc_changed)
        pod_inf = self.informers.informer(Pod)
        pod_inf.add_handler(on_add=self._pod_added, on_update=self._pod_updated,
                            on_delete=self._pod_added)

    def _svc_changed(self, svc: Any) -> None:
        self.queue.add((svc.metadata.namespace or "", svc.metadata.name))

    def _pod_added(self, pod: Any) -> None:
        ns = pod.metadata.namespace or ""
        for name in self.service_selectors.selecting(ns, pod.metadata.labels):
            self.queue.add((ns, name))

    def _pod_updated(self, old: Any, new: Any) -> None:
        if endpoint_signature(old) == endpoint_signature(new):
            return
        ns = new.metadata.namespace or ""
        keys = set(self.service_selectors.selecting(ns, new.metadata.labels))
        if old.metadata.labels != new.metadata.labels:
            keys.update(self.service_selectors.selecting(ns, old.metadata.labels))
        for name in keys:
            self.queue.add((ns, name))

    def selected_pods(self, svc: Any) -> list[Any]:
        ns = svc.metadata.namespace or ""
        sel = svc.spec.selector
        out = []
        for name in self.pod_labels.select(ns, sel):
            p = self.pods.get(name, ns)
            if p is not None and match_labels(sel, p.metadata.labels):
                out.append(p)
        return out
