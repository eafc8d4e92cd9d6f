"""Change tracking: Services + EndpointSlices + this Node → the desired state.

kube-proxy's split (servicechangetracker.go / endpointschangetracker.go), cut to
one class: informer handlers feed objects in, each change marks its service
dirty, and :meth:`ChangeTracker.desired` recomputes only the dirty services, so
a one-service change costs one service's worth of work however many services
exist. Nothing is produced for headless and ExternalName services.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any, Callable, Iterable

from kubesvc.proxy.model import (DesiredState, Endpoint, EndpointSet, ServiceEntry, ServicePort,
                                 ServicePortName)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_AFFINITY_TIMEOUT = 10800  # seconds, Kubernetes' default for ClientIP affinity

SvcKey = tuple[str, str]


def _is_ipv4(ip: str | None) -> bool:
    try:
        return ip is not None and ipaddress.ip_address(ip).version == 4
    except ValueError:
        return False


def service_ports(svc: Any) -> list[ServicePort]:
    """The ServicePorts of one Service object, or [] when the proxy must ignore it."""
    spec = svc.spec
    if spec is None or spec.type == "ExternalName":
        return []
    ips = [spec.clusterIP, *(spec.clusterIPs or [])]
    cluster_ip = next((ip for ip in ips if _is_ipv4(ip)), None)
    if cluster_ip is None:  # headless ("None"), unallocated, or IPv6-only: nothing to proxy
        return []
    svc_type = spec.type or "ClusterIP"
    externally = svc_type in ("NodePort", "LoadBalancer") or bool(spec.externalIPs)
    lb_ips: tuple[str, ...] = ()
    if svc_type == "LoadBalancer" and svc.status and svc.status.loadBalancer:
        lb_ips = tuple(i.ip for i in (svc.status.loadBalancer.ingress or []) if _is_ipv4(i.ip))
    affinity = 0
    if spec.sessionAffinity == "ClientIP":
        cfg = spec.sessionAffinityConfig
        affinity = (cfg and cfg.clientIP and cfg.clientIP.timeoutSeconds) or DEFAULT_AFFINITY_TIMEOUT
    ext_local = externally and spec.externalTrafficPolicy == "Local"
    hc = (spec.healthCheckNodePort or 0) if (svc_type == "LoadBalancer" and ext_local) else 0
    out = []
    for p in spec.ports or []:
        proto = p.protocol or "TCP"
        out.append(ServicePort(
            name=ServicePortName(svc.metadata.namespace or "default", svc.metadata.name, p.name or "", proto),
            cluster_ip=cluster_ip, port=p.port, protocol=proto,
            node_port=(p.nodePort or 0) if svc_type in ("NodePort", "LoadBalancer") else 0,
            external_ips=tuple(ip for ip in (spec.externalIPs or []) if _is_ipv4(ip)),
            load_balancer_ips=lb_ips,
            load_balancer_source_ranges=tuple(spec.loadBalancerSourceRanges or ()) if lb_ips else (),
            affinity_timeout=affinity,
            external_policy_local=ext_local,
            internal_policy_local=spec.internalTrafficPolicy == "Local",
            health_check_node_port=hc,
        ))
    return out


def slice_endpoints(slices: Iterable[Any], spn: ServicePortName, node_name: str) -> list[Endpoint]:
    """Endpoints for one service port out of the service's EndpointSlices (deduplicated)."""
    found: dict[tuple[str, int], Endpoint] = {}
    for sl in slices:
        if (sl.addressType or "IPv4") != "IPv4":
            continue
        port = next((p.port for p in (sl.ports or [])
                     if (p.name or "") == spn.port and (p.protocol or "TCP") == spn.protocol), None)
        if port is None:
            continue
        for ep in sl.endpoints or []:
            if not ep.addresses:
                continue
            c = ep.conditions
            # As in Kubernetes: an unknown (nil) ready means ready; nil serving means ready.
            ready = True if c is None or c.ready is None else bool(c.ready)
            serving = ready if c is None or c.serving is None else bool(c.serving)
            terminating = bool(c and c.terminating)
            e = Endpoint(ip=ep.addresses[0], port=port, node_name=ep.nodeName or "",
                         is_local=bool(node_name) and ep.nodeName == node_name,
                         ready=ready, serving=serving, terminating=terminating)
            prev = found.get((e.ip, e.port))
            if prev is None or (e.ready and not prev.ready):
                found[(e.ip, e.port)] = e
    return list(found.values())


class ChangeTracker:
    """Keeps the desired state up to date from informer events, one service at a time."""

    def __init__(self, node_name: str, node_ips: tuple[str, ...] = (),
                 on_change: Callable[[], None] | None = None):
        self.node_name = node_name
        self.node_ips = node_ips
        self.on_change = on_change or (lambda: None)
        self._services: dict[SvcKey, Any] = {}
        self._slices: dict[SvcKey, dict[str, Any]] = {}
        self._entries: dict[SvcKey, dict[ServicePortName, ServiceEntry]] = {}
        self._state: dict[ServicePortName, ServiceEntry] = {}
        self._dirty: set[SvcKey] = set()
        self._node_changed = True
        # when each dirty service first changed, for network programming latency
        self.pending_since: dict[SvcKey, float] = {}

    # -- inputs (informer handlers) ---------------------------------------
    def _touch(self, key: SvcKey) -> None:
        self._dirty.add(key)
        self.pending_since.setdefault(key, time.time())
        self.on_change()

    def service_update(self, svc: Any) -> None:
        key = (svc.metadata.namespace or "default", svc.metadata.name)
        self._services[key] = svc
        self._touch(key)

    def service_delete(self, svc: Any) -> None:
        key = (svc.metadata.namespace or "default", svc.metadata.name)
        self._services.pop(key, None)
        self._touch(key)

    @staticmethod
    def _slice_owner(sl: Any) -> SvcKey | None:
        name = (sl.metadata.labels or {}).get(SERVICE_NAME_LABEL)
        return (sl.metadata.namespace or "default", name) if name else None

    def slice_update(self, sl: Any) -> None:
        key = self._slice_owner(sl)
        if key is None:
            return
        self._slices.setdefault(key, {})[sl.metadata.name] = sl
        self._touch(key)

    def slice_delete(self, sl: Any) -> None:
        key = self._slice_owner(sl)
        if key is None:
            return
        by_name = self._slices.get(key, {})
        by_name.pop(sl.metadata.name, None)
        if not by_name:
            self._slices.pop(key, None)
        self._touch(key)

    def node_update(self, node: Any) -> None:
        """Take the node's InternalIP/ExternalIP addresses unless --node-ip fixed them."""
        addrs = tuple(a.address for a in ((node.status and node.status.addresses) or [])
                      if a.type in ("InternalIP", "ExternalIP") and _is_ipv4(a.address))
        if addrs and addrs != self.node_ips:
            self.node_ips = addrs
            self._node_changed = True
            self.on_change()

    def handlers(self, kind: str) -> dict[str, Callable]:
        """Keyword arguments for Informer.add_handler for 'service', 'slice' or 'node'."""
        upd = {"service": self.service_update, "slice": self.slice_update, "node": self.node_update}[kind]
        dele = {"service": self.service_delete, "slice": self.slice_delete, "node": lambda o: None}[kind]
        return {"on_add": upd, "on_update": lambda old, new: upd(new), "on_delete": dele}

    # -- output -----------------------------------------------------------
    @property
    def has_changes(self) -> bool:
        return bool(self._dirty) or self._node_changed

    def desired(self) -> DesiredState:
        """Recompute the dirty services and return a snapshot of the whole state."""
        changed: set[ServicePortName] = set()
        for key in self._dirty:
            old = self._entries.pop(key, {})
            for spn in old:
                self._state.pop(spn, None)
            new: dict[ServicePortName, ServiceEntry] = {}
            svc = self._services.get(key)
            if svc is not None:
                slices = list(self._slices.get(key, {}).values())
                for sp in service_ports(svc):
                    eps = slice_endpoints(slices, sp.name, self.node_name)
                    new[sp.name] = ServiceEntry(sp, EndpointSet.categorize(eps))
            if new:
                self._entries[key] = new
                self._state.update(new)
            changed.update(spn for spn in old.keys() | new.keys() if old.get(spn) != new.get(spn))
        self._dirty.clear()
        full = self._node_changed
        self._node_changed = False
        return DesiredState(services=dict(self._state), node_name=self.node_name,
                            node_ips=self.node_ips, changed=None if full else frozenset(changed))

    def take_pending(self) -> list[float]:
        """Change times of the services programmed by the last sync (then forgotten)."""
        out = list(self.pending_since.values())
        self.pending_since.clear()
        return out
