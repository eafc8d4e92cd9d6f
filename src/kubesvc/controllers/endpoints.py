"""Endpoints controller: the core/v1 Endpoints object of every service with a selector,
as kube-controller-manager's endpoint controller keeps it.

Ready pods go to `addresses`, the others to `notReadyAddresses` (all to `addresses`
with publishNotReadyAddresses, which also keeps terminating pods); terminating pods
are left out otherwise. Named targetPorts are resolved per pod, and pods are packed
into subsets by the ports they serve (RepackSubsets). The object is written only when
its subsets or labels differ from what is stored; services without a selector are
the user's to manage and are not touched; ExternalName services get none.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from lightkube.resources.core_v1 import Endpoints

from kubesvc.controllers.base import Controller, ControllerContext, is_not_found
from kubesvc.controllers.servicepods import (ServicePodsWiring, find_port, has_selector, pod_hostname,
                                             pod_ip, should_pod_be_in_endpoints, target_ref)
from kubesvc.controllers.util import is_pod_ready, ns_name

log = logging.getLogger(__name__)

LABEL_HEADLESS = "service.kubernetes.io/headless"
MAX_CAPACITY = 1000
ANN_OVER_CAPACITY = "endpoints.kubernetes.io/over-capacity"


def _addr_key(a: dict) -> tuple:
    return (a.get("ip", ""), (a.get("targetRef") or {}).get("uid", ""))


def _port_tuple(p: dict) -> tuple:
    return (p.get("name") or "", p.get("port"), p.get("protocol") or "TCP", p.get("appProtocol") or "")


def _norm_port(p: dict) -> dict:
    out = {"port": p.get("port"), "protocol": p.get("protocol") or "TCP"}
    if p.get("name"):
        out["name"] = p["name"]
    if p.get("appProtocol"):
        out["appProtocol"] = p["appProtocol"]
    return out


def _norm_addr(a: dict) -> dict:
    out = {"ip": a.get("ip")}
    for k in ("hostname", "nodeName"):
        if a.get(k):
            out[k] = a[k]
    tr = a.get("targetRef")
    if tr:
        out["targetRef"] = {k: tr[k] for k in ("kind", "namespace", "name", "uid") if tr.get(k)}
    return out


def repack(entries: list[tuple[dict, bool, tuple]]) -> list[dict]:
    """(address, ready, ports) triples -> canonical subsets: one per distinct port set,
    addresses sorted by IP, ports sorted (endpoints.RepackSubsets + SortSubsets)."""
    by_addr: dict[tuple, tuple[dict, bool, set]] = {}
    for addr, ready, ports in entries:
        k = _addr_key(addr)
        cur = by_addr.get(k)
        if cur is None:
            by_addr[k] = (addr, ready, set(ports))
        else:
            cur[2].update(ports)
    groups: dict[tuple, tuple[list, list]] = {}
    for addr, ready, ports in by_addr.values():
        pk = tuple(sorted(ports))
        g = groups.setdefault(pk, ([], []))
        (g[0] if ready else g[1]).append(addr)
    subsets = []
    for pk in sorted(groups):
        ready, not_ready = groups[pk]
        sub: dict = {}
        if ready:
            sub["addresses"] = sorted(ready, key=_addr_key)
        if not_ready:
            sub["notReadyAddresses"] = sorted(not_ready, key=_addr_key)
        if pk:
            sub["ports"] = [_norm_port({"name": n, "port": p, "protocol": pr, "appProtocol": ap})
                            for n, p, pr, ap in pk]
        subsets.append(sub)
    return subsets


def normalize_subsets(subsets: list[dict] | None) -> list[dict]:
    entries = []
    for s in subsets or ():
        ports = tuple(_port_tuple(p) for p in s.get("ports") or ())
        for a in s.get("addresses") or ():
            entries.append((_norm_addr(a), True, ports))
        for a in s.get("notReadyAddresses") or ():
            entries.append((_norm_addr(a), False, ports))
    return repack(entries)


def desired_subsets(svc: Any, pods: list[Any]) -> list[dict]:
    tolerate_unready = bool(svc.spec.publishNotReadyAddresses)
    headless = svc.spec.clusterIP == "None"
    family = (svc.spec.ipFamilies or [None])[0]
    entries = []
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, include_terminating=tolerate_unready):
            continue
        ip = pod_ip(pod, family)
        if not ip:
            continue
        addr: dict = {"ip": ip}
        hostname = pod_hostname(pod, svc)
        if hostname:
            addr["hostname"] = hostname
        if pod.spec and pod.spec.nodeName:
            addr["nodeName"] = pod.spec.nodeName
        addr["targetRef"] = target_ref(pod)
        ready = tolerate_unready or is_pod_ready(pod)
        if not svc.spec.ports:
            if headless:
                entries.append((addr, ready, ()))
            continue
        for sp in svc.spec.ports:
            num = find_port(pod, sp)
            if num is None:
                continue  # the pod lacks this named port
            entries.append((addr, ready, (_port_tuple({"name": sp.name, "port": num,
                                                       "protocol": sp.protocol,
                                                       "appProtocol": sp.appProtocol}),)))
    return repack(entries)


def truncate(subsets: list[dict], limit: int = MAX_CAPACITY) -> tuple[list[dict], bool]:
    """Keep at most `limit` addresses past 1000, as kube's truncateEndpoints: every ready
    address stays while they fit and the not-ready ones are cut; when even the ready ones
    do not fit, only ready ones are kept. Each subset keeps its proportion of what is
    cut (rounded up, the last one gets the rest)."""
    total_ready = sum(len(s.get("addresses", ())) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses", ())) for s in subsets)
    if total_ready + total_not_ready <= limit:
        return subsets, False
    cut_ready = total_ready > limit
    field, room, total = ("addresses", limit, total_ready) if cut_ready \
        else ("notReadyAddresses", limit - total_ready, total_not_ready)
    left = room
    out = []
    for i, s in enumerate(subsets):
        share = left if i == len(subsets) - 1 else min(left, math.ceil(len(s.get(field, ())) / total * room))
        left -= share
        s = dict(s)
        s[field] = s.get(field, [])[:share]
        if cut_ready:
            s.pop("notReadyAddresses", None)
        for f in ("addresses", "notReadyAddresses"):
            if f in s and not s[f]:
                del s[f]
        if "addresses" in s or "notReadyAddresses" in s:
            out.append(s)
    return out, True


def desired_labels(svc: Any) -> dict[str, str]:
    labels = {k: v for k, v in (svc.metadata.labels or {}).items() if k != LABEL_HEADLESS}
    if svc.spec.clusterIP == "None":
        labels[LABEL_HEADLESS] = ""
    return labels


class EndpointsController(ServicePodsWiring, Controller):
    """Keeps core/v1 Endpoints of selector services true."""

    name = "endpoint-controller"
    workers = 5  # kube-controller-manager's default --concurrent-*-syncs

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.writes = 0
        self._own: dict[tuple[str, str], str] = {}

    def setup(self) -> None:
        self.wire_services_and_pods()
        self.endpoints = self.informers.view(Endpoints)
        self.informers.informer(Endpoints).add_handler(
            on_add=self._ep_event, on_update=lambda _o, n: self._ep_event(n), on_delete=self._ep_deleted)

    def _ep_event(self, ep: Any) -> None:
        key = ns_name(ep)
        if self._own.get(key) == ep.metadata.resourceVersion:
            return
        if self.services.get(key[1], key[0]) is not None:
            self.queue.add(key)

    def _ep_deleted(self, ep: Any) -> None:
        key = ns_name(ep)
        if self._own.pop(key, None) == "deleted":
            return
        if self.services.get(key[1], key[0]) is not None:
            self.queue.add(key)

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        svc = self.services.get(name, ns)
        current = self.endpoints.get(name, ns)
        if svc is None:
            # The service is gone (we only get here from its delete event, or from a pod
            # or Endpoints event racing it): its Endpoints go with it, as in kube.
            if current is not None:
                await self._delete(current)
            return
        if not has_selector(svc):
            return  # selector-less services: the user's Endpoints, left alone
        if svc.spec.type == "ExternalName":
            # No endpoints for a DNS alias, selector or not (kube, issues.k8s.io/105986);
            # ones we made before the type changed go, as the slices do.
            if current is not None:
                await self._delete(current)
            return
        pods = self.selected_pods(svc)
        subsets, truncated = truncate(desired_subsets(svc, pods))
        labels = desired_labels(svc)
        annotations = dict((current.metadata.annotations or {}) if current else {})
        if truncated:
            annotations[ANN_OVER_CAPACITY] = "truncated"
        else:
            annotations.pop(ANN_OVER_CAPACITY, None)
        if current is not None:
            cur = current.to_dict()
            if normalize_subsets(cur.get("subsets")) == subsets and \
                    (current.metadata.labels or {}) == labels and \
                    (current.metadata.annotations or {}) == annotations:
                return  # nothing changed: no write
            body = {**cur, "subsets": subsets}
            body["metadata"] = {**cur["metadata"], "labels": labels, "annotations": annotations}
            obj = await self.client.replace(Endpoints.from_dict(body), namespace=ns)
        else:
            body = {"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": ns, "labels": labels,
                                 **({"annotations": annotations} if annotations else {})},
                    "subsets": subsets}
            obj = await self.client.create(Endpoints.from_dict(body), namespace=ns)
        self.writes += 1
        self._own[key] = obj.metadata.resourceVersion
        self.endpoints.record(obj)

    async def _delete(self, ep: Any) -> None:
        key = ns_name(ep)
        self._own[key] = "deleted"
        try:
            await self.client.delete(Endpoints, key[1], namespace=key[0])
            self.writes += 1
        except Exception as err:
            if not is_not_found(err):
                self._own.pop(key, None)
                raise
        self.endpoints.record_delete(ep)
