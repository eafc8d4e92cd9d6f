"""Node, Namespace, Event, ConfigMap and Lease rows."""

from __future__ import annotations

from kubesvc.objects.printers.base import (CORE, META, Cells, Column, Printer, age, age_column, doc,
                                           name, name_column, parse_time, since)

_ROLE_PREFIX = "node-role.kubernetes.io/"
_ROLE_LABEL = "kubernetes.io/role"


def node_roles(node: dict) -> list[str]:
    """findNodeRoles: node-role.kubernetes.io/<role> keys and the kubernetes.io/role value."""
    roles = set()
    for k, v in ((node.get("metadata") or {}).get("labels") or {}).items():
        if k.startswith(_ROLE_PREFIX) and len(k) > len(_ROLE_PREFIX):
            roles.add(k[len(_ROLE_PREFIX):])
        elif k == _ROLE_LABEL and v:
            roles.add(v)
    return sorted(roles)


def _address(node: dict, kind: str) -> str:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == kind:
            return a.get("address", "")
    return "<none>"


def node_row(node: dict, now: float) -> tuple[Cells, None]:
    status = node.get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    states = []
    if ready:
        states.append("Ready" if ready[-1].get("status") == "True" else "NotReady")
    else:
        states.append("Unknown")
    if (node.get("spec") or {}).get("unschedulable"):
        states.append("SchedulingDisabled")
    info = status.get("nodeInfo") or {}
    return [name(node), ",".join(states), ",".join(node_roles(node)) or "<none>", age(node, now),
            info.get("kubeletVersion", ""), _address(node, "InternalIP"), _address(node, "ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"], None


def namespace_row(ns: dict, now: float) -> tuple[Cells, None]:
    return [name(ns), (ns.get("status") or {}).get("phase", ""), age(ns, now)], None


def _event_source(ev: dict) -> str:
    source = ev.get("source") or {}
    component = source.get("component") or ev.get("reportingComponent") or ""
    instance = source.get("host") or ev.get("reportingInstance") or ""
    return f"{component}, {instance}" if instance else component


def event_row(ev: dict, now: float) -> tuple[Cells, None]:
    first = since(ev.get("firstTimestamp"), now)
    if parse_time(ev.get("firstTimestamp")) is None:
        first = since(ev.get("eventTime"), now)
    last = since(ev.get("lastTimestamp"), now)
    if parse_time(ev.get("lastTimestamp")) is None:
        last = first
    count = ev.get("count", 0)
    series = ev.get("series")
    if series is not None:
        last = since(series.get("lastObservedTime"), now)
        count = series.get("count", 0)
    elif count == 0:
        count = 1  # singleton events of the events.k8s.io API carry no count
    involved = ev.get("involvedObject") or {}
    kind = (involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    return [last, ev.get("type", ""), ev.get("reason", ""), target, involved.get("fieldPath", ""),
            _event_source(ev), (ev.get("message") or "").strip(), first, count, name(ev)], None


def configmap_row(cm: dict, now: float) -> tuple[Cells, None]:
    return [name(cm), len(cm.get("data") or {}) + len(cm.get("binaryData") or {}), age(cm, now)], None


def lease_row(lease: dict, now: float) -> tuple[Cells, None]:
    return [name(lease), (lease.get("spec") or {}).get("holderIdentity") or "", age(lease, now)], None


_INFO = CORE + "NodeSystemInfo"
_EVENT = CORE + "Event"

NODE = Printer((
    name_column(),
    Column("Status", "string", "The status of the node"),
    Column("Roles", "string", "The roles of the node"),
    age_column(),
    Column("Version", "string", doc(_INFO, "kubeletVersion")),
    Column("Internal-IP", "string", doc(CORE + "NodeStatus", "addresses"), priority=1),
    Column("External-IP", "string", doc(CORE + "NodeStatus", "addresses"), priority=1),
    Column("OS-Image", "string", doc(_INFO, "osImage"), priority=1),
    Column("Kernel-Version", "string", doc(_INFO, "kernelVersion"), priority=1),
    Column("Container-Runtime", "string", doc(_INFO, "containerRuntimeVersion"), priority=1),
), node_row)

NAMESPACE = Printer((
    name_column(),
    Column("Status", "string", "The status of the namespace"),
    age_column(),
), namespace_row)

EVENT = Printer((
    Column("Last Seen", "string", doc(_EVENT, "lastTimestamp")),
    Column("Type", "string", doc(_EVENT, "type")),
    Column("Reason", "string", doc(_EVENT, "reason")),
    Column("Object", "string", doc(_EVENT, "involvedObject")),
    Column("Subobject", "string", doc(CORE + "ObjectReference", "fieldPath"), priority=1),
    Column("Source", "string", doc(_EVENT, "source"), priority=1),
    Column("Message", "string", doc(_EVENT, "message")),
    Column("First Seen", "string", doc(_EVENT, "firstTimestamp"), priority=1),
    Column("Count", "string", doc(_EVENT, "count"), priority=1),
    Column("Name", "string", doc(META, "name"), "name", priority=1),
), event_row)

CONFIG_MAP = Printer((
    name_column(),
    Column("Data", "string", doc(CORE + "ConfigMap", "data")),
    age_column(),
), configmap_row)

LEASE = Printer((
    name_column(),
    Column("Holder", "string", doc("io.k8s.api.coordination.v1.LeaseSpec", "holderIdentity")),
    age_column(),
), lease_row)

PRINTERS = {
    ("", "Node"): NODE,
    ("", "Namespace"): NAMESPACE,
    ("", "Event"): EVENT,
    ("", "ConfigMap"): CONFIG_MAP,
    ("coordination.k8s.io", "Lease"): LEASE,
}
