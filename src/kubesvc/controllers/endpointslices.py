"""EndpointSlice controller: for every service with a selector, slices listing the pods
it selects, as kube-controller-manager's endpointslice controller keeps them.

Each endpoint carries conditions ready/serving/terminating (ready = serving and not
terminating, or everything when publishNotReadyAddresses), hostname when the pod's
subdomain names the service, nodeName, zone and a targetRef. Pods are grouped by
the ports they resolve (named targetPorts differ per pod) and each group is cut into
slices of at most 100. Reconciling keeps endpoints in the slice they are already in,
fills free room before creating slices, and writes only slices whose content changed.
"""

from __future__ import annotations

import logging
from typing import Any

from lightkube.resources.core_v1 import Node
from lightkube.resources.discovery_v1 import EndpointSlice

from kubesvc.controllers.base import Controller, ControllerContext, is_not_found
from kubesvc.controllers.servicepods import (ServicePodsWiring, find_port, has_selector, pod_hostname,
                                             pod_ip, should_pod_be_in_endpoints, target_ref)
from kubesvc.controllers.util import (is_pod_ready, ns_name, owner_reference, rand_string)

log = logging.getLogger(__name__)

LABEL_SERVICE_NAME = "kubernetes.io/service-name"
LABEL_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
LABEL_HEADLESS = "service.kubernetes.io/headless"
MAX_ENDPOINTS_PER_SLICE = 100

PortKey = tuple  # canonical, sorted port tuples


def slice_ports(svc: Any, pod: Any) -> list[dict] | None:
    """The ports this pod serves for the service (None: it serves none of them)."""
    out = []
    for sp in svc.spec.ports or ():
        num = find_port(pod, sp)
        if num is None:
            continue
        p = {"name": sp.name or "", "port": num, "protocol": sp.protocol or "TCP"}
        if sp.appProtocol:
            p["appProtocol"] = sp.appProtocol
        out.append(p)
    if svc.spec.ports and not out:
        return None
    return out


def port_key(ports: list[dict]) -> PortKey:
    return tuple(sorted((p.get("name") or "", p.get("port"), p.get("protocol") or "TCP",
                         p.get("appProtocol") or "") for p in ports or ()))


def norm_endpoint(e: dict) -> dict:
    """Canonical form of an endpoint, so stored and desired ones compare equal."""
    out: dict = {"addresses": list(e.get("addresses") or [])}
    cond = {k: v for k, v in (e.get("conditions") or {}).items() if v is not None}
    out["conditions"] = cond
    for k in ("hostname", "nodeName", "zone"):
        if e.get(k):
            out[k] = e[k]
    tr = e.get("targetRef")
    if tr:
        out["targetRef"] = {k: tr[k] for k in ("kind", "namespace", "name", "uid") if tr.get(k)}
    return out


def endpoint_key(e: dict) -> str:
    tr = e.get("targetRef") or {}
    return tr.get("uid") or tr.get("name") or ",".join(e.get("addresses") or [])


def desired_endpoints(svc: Any, pods: list[Any], address_type: str,
                      zone_of=lambda node: None) -> dict[PortKey, tuple[list[dict], dict[str, dict]]]:
    """Port group -> (ports, {endpoint key: endpoint}) for the pods the service selects."""
    publish_all = bool(svc.spec.publishNotReadyAddresses)
    groups: dict[PortKey, tuple[list[dict], dict[str, dict]]] = {}
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, include_terminating=True):
            continue
        ip = pod_ip(pod, address_type)
        if not ip:
            continue
        ports = slice_ports(svc, pod)
        if ports is None:
            continue  # a named targetPort this pod does not have
        serving = is_pod_ready(pod)
        terminating = pod.metadata.deletionTimestamp is not None
        ep: dict = {"addresses": [ip],
                    "conditions": {"ready": publish_all or (serving and not terminating),
                                   "serving": serving, "terminating": terminating}}
        hostname = pod_hostname(pod, svc)
        if hostname:
            ep["hostname"] = hostname
        node = pod.spec.nodeName if pod.spec else None
        if node:
            ep["nodeName"] = node
            zone = zone_of(node)
            if zone:
                ep["zone"] = zone
        ep["targetRef"] = target_ref(pod)
        key = port_key(ports)
        group = groups.setdefault(key, (ports, {}))
        group[1][endpoint_key(ep)] = ep
    return groups


def desired_labels(svc: Any) -> dict[str, str]:
    labels = {k: v for k, v in (svc.metadata.labels or {}).items()
              if k not in (LABEL_SERVICE_NAME, LABEL_MANAGED_BY, LABEL_HEADLESS)}
    labels[LABEL_SERVICE_NAME] = svc.metadata.name
    labels[LABEL_MANAGED_BY] = MANAGED_BY
    if svc.spec.clusterIP == "None":
        labels[LABEL_HEADLESS] = ""
    return labels


def address_types(svc: Any) -> list[str]:
    fams = [f for f in (svc.spec.ipFamilies or ()) if f in ("IPv4", "IPv6")]
    return fams or ["IPv4"]


def slice_name_prefix(svc_name: str) -> str:
    # generateName "<service>-": the base is cut so that base + 5 random chars <= 63
    return svc_name[:58] + "-" if len(svc_name) < 58 else svc_name[:57] + "-"


class SlicePlan:
    """The result of reconciling one address type: slices to create, update and delete."""

    def __init__(self) -> None:
        self.create: list[dict] = []
        self.update: list[dict] = []
        self.delete: list[Any] = []


def reconcile(svc: Any, existing: list[Any], desired: dict, address_type: str) -> SlicePlan:
    """Plan the writes that turn `existing` slices into `desired`, with minimal churn."""
    plan = SlicePlan()
    labels = desired_labels(svc)
    owner = [owner_reference(svc, "v1", "Service")]

    # Working copies of existing slices: name -> state
    states = []
    for s in sorted(existing, key=lambda s: s.metadata.name):
        d = s.to_dict()
        states.append({
            "obj": s, "orig": d,
            "ports": [dict(p) for p in d.get("ports") or []],
            "key": port_key(d.get("ports") or []),
            "endpoints": [norm_endpoint(e) for e in d.get("endpoints") or []],
        })
    placed: set[tuple[PortKey, str]] = set()
    for st in states:
        want = desired.get(st["key"])
        kept = []
        for e in st["endpoints"]:
            k = endpoint_key(e)
            if want is None or k not in want[1] or (st["key"], k) in placed:
                continue
            kept.append(norm_endpoint(want[1][k]))
            placed.add((st["key"], k))
        st["endpoints"] = kept

    total_desired = sum(len(g[1]) for g in desired.values())
    for key, (ports, eps) in desired.items():
        todo = [norm_endpoint(e) for k, e in eps.items() if (key, k) not in placed]
        if not todo:
            continue
        # Fill slices of this port group that are changing anyway first, then others.
        same = [st for st in states if st["key"] == key]
        same.sort(key=lambda st: (not _changed(st, labels, owner), -len(st["endpoints"])))
        for st in same:
            room = MAX_ENDPOINTS_PER_SLICE - len(st["endpoints"])
            if room > 0 and todo:
                st["endpoints"].extend(todo[:room])
                todo = todo[room:]
        while todo:
            batch, todo = todo[:MAX_ENDPOINTS_PER_SLICE], todo[MAX_ENDPOINTS_PER_SLICE:]
            plan.create.append(_new_slice(svc, labels, owner, address_type, ports, batch))

    # Empty slices go, except one placeholder when the service has no endpoints at all.
    keep_placeholder = total_desired == 0 and not plan.create
    placeholder_kept = False
    for st in states:
        if not st["endpoints"]:
            if keep_placeholder and not placeholder_kept:
                placeholder_kept = True
                st["ports"], st["key"] = [], ()  # kube's placeholder slice has no ports
            else:
                plan.delete.append(st["obj"])
                continue
        elif st["key"] not in desired:
            plan.delete.append(st["obj"])
            continue
        if _changed(st, labels, owner):
            body = dict(st["orig"])
            md = dict(body.get("metadata") or {})
            md["labels"] = {**(md.get("labels") or {}), **labels}
            md["ownerReferences"] = owner
            body["metadata"] = md
            body["endpoints"] = st["endpoints"]
            body["ports"] = st["ports"]
            plan.update.append(body)
    if keep_placeholder and not placeholder_kept:
        plan.create.append(_new_slice(svc, labels, owner, address_type, [], []))
    # As kube does: a slice to create takes over an empty slice being deleted (the
    # placeholder), one update instead of a create and a delete.
    for victim in list(plan.delete):
        if not plan.create:
            break
        if (victim.endpoints or []) or victim.addressType != address_type:
            continue
        body = plan.create.pop(0)
        orig = victim.to_dict()
        body["metadata"] = {**orig["metadata"], "labels": body["metadata"]["labels"],
                            "ownerReferences": owner}
        plan.delete.remove(victim)
        plan.update.append(body)
    return plan


def _changed(st: dict, labels: dict, owner: list) -> bool:
    orig = st["orig"]
    md = orig.get("metadata") or {}
    cur_labels = md.get("labels") or {}
    if any(cur_labels.get(k) != v for k, v in labels.items()):
        return True
    refs = [{k: r.get(k) for k in ("apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion")}
            for r in md.get("ownerReferences") or []]
    if refs != owner:
        return True
    if port_key(orig.get("ports") or []) != port_key(st["ports"]) or \
            len(orig.get("ports") or []) != len(st["ports"]):
        return True
    return [norm_endpoint(e) for e in orig.get("endpoints") or []] != st["endpoints"]


def _new_slice(svc: Any, labels: dict, owner: list, address_type: str, ports: list[dict],
               endpoints: list[dict]) -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": slice_name_prefix(svc.metadata.name) + rand_string(5),
                     "namespace": svc.metadata.namespace, "labels": dict(labels),
                     "ownerReferences": owner},
        "addressType": address_type, "endpoints": endpoints, "ports": ports,
    }


class EndpointSliceController(ServicePodsWiring, Controller):
    """Keeps discovery.k8s.io/v1 EndpointSlices of selector services true."""

    name = "endpointslice-controller"
    workers = 5  # kube-controller-manager's default --concurrent-*-syncs

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.writes = 0
        self._own: dict[tuple[str, str], str] = {}  # slice key -> resourceVersion we wrote

    def setup(self) -> None:
        self.wire_services_and_pods()
        self.slices = self.informers.view(EndpointSlice)
        self.nodes = self.informers.view(Node)
        self.informers.informer(EndpointSlice).add_handler(
            on_add=self._slice_event, on_update=lambda _o, n: self._slice_event(n),
            on_delete=self._slice_deleted)
        self._by_service: dict[tuple[str, str], set[str]] = {}

    def _slice_event(self, s: Any) -> None:
        labels = s.metadata.labels or {}
        if labels.get(LABEL_MANAGED_BY) != MANAGED_BY or LABEL_SERVICE_NAME not in labels:
            return
        ns, name = ns_name(s)
        svc_key = (ns, labels[LABEL_SERVICE_NAME])
        self._by_service.setdefault(svc_key, set()).add(name)
        if self._own.get((ns, name)) == s.metadata.resourceVersion:
            return  # our own write coming back
        self.queue.add(svc_key)

    def _slice_deleted(self, s: Any) -> None:
        labels = s.metadata.labels or {}
        if labels.get(LABEL_MANAGED_BY) != MANAGED_BY or LABEL_SERVICE_NAME not in labels:
            return
        ns, name = ns_name(s)
        svc_key = (ns, labels[LABEL_SERVICE_NAME])
        names = self._by_service.get(svc_key)
        if names:
            names.discard(name)
        if self._own.pop((ns, name), None) == "deleted":
            return
        self.queue.add(svc_key)

    def _zone_of(self, node_name: str) -> str | None:
        node = self.nodes.get(node_name)
        if node is None:
            return None
        return (node.metadata.labels or {}).get("topology.kubernetes.io/zone")

    def _existing(self, ns: str, svc_name: str) -> list[Any]:
        out = []
        for name in list(self._by_service.get((ns, svc_name), ())):
            s = self.slices.get(name, ns)
            if s is not None:
                out.append(s)
        return out

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        svc = self.services.get(name, ns)
        existing = self._existing(ns, name)
        if svc is None or not has_selector(svc) or svc.spec.type == "ExternalName":
            # Removing the service removes its slices (GC would too, via ownerReferences).
            for s in existing:
                await self._delete(s)
            return
        pods = self.selected_pods(svc)
        types = address_types(svc)
        for at in types:
            mine = [s for s in existing if s.addressType == at]
            desired = desired_endpoints(svc, pods, at, self._zone_of)
            plan = reconcile(svc, mine, desired, at)
            await self._apply(ns, name, plan)
        for s in existing:
            if s.addressType not in types:
                await self._delete(s)

    async def _apply(self, ns: str, svc_name: str, plan: SlicePlan) -> None:
        # Creates and updates first so consumers never see a service with no endpoints
        # in the middle of moving endpoints between slices.
        for body in plan.create:
            obj = await self.client.create(EndpointSlice.from_dict(body), namespace=ns)
            self._wrote(obj, svc_name)
        for body in plan.update:
            obj = await self.client.replace(EndpointSlice.from_dict(body), namespace=ns)
            self._wrote(obj, svc_name)
        for s in plan.delete:
            await self._delete(s)

    def _wrote(self, obj: Any, svc_name: str) -> None:
        self.writes += 1
        key = ns_name(obj)
        self._own[key] = obj.metadata.resourceVersion
        self._by_service.setdefault((key[0], svc_name), set()).add(key[1])
        self.slices.record(obj)

    async def _delete(self, s: Any) -> None:
        ns, name = ns_name(s)
        self._own[(ns, name)] = "deleted"
        try:
            await self.client.delete(EndpointSlice, name, namespace=ns)
            self.writes += 1
        except Exception as err:
            if not is_not_found(err):
                self._own.pop((ns, name), None)
                raise
        self.slices.record_delete(s)
        labels = s.metadata.labels or {}
        names = self._by_service.get((ns, labels.get(LABEL_SERVICE_NAME, "")))
        if names:
            names.discard(name)
