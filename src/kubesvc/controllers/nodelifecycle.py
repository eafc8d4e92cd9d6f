"""Node lifecycle: notices nodes whose agent stopped heartbeating and takes their pods out
of service, as kube-controller-manager's node lifecycle controller does.

A node's heartbeat is the newer of its Lease's renewTime (kube-node-lease) and its
Ready condition's lastHeartbeatTime. When it is older than
--node-monitor-grace-period (40 s), the node's Ready/MemoryPressure/DiskPressure/
PIDPressure conditions become Unknown ("Kubelet stopped posting node status."). While
a node is not Ready (False or Unknown) it carries the node.kubernetes.io/not-ready or
/unreachable taints (NoSchedule and NoExecute), its pods are marked Ready=False (so
they leave Endpoints and EndpointSlices at once), and once a pod's NoExecute
toleration for the taint runs out (tolerationSeconds; the API server gives every pod
300 s; --pod-eviction-timeout for pods with none) it is deleted so its ReplicaSet
replaces it elsewhere. Pods of a node that is deleted are deleted at once (grace
period 0), as kube's pod garbage collector does. Timers come from the
work queue (add_after at the moment a heartbeat would expire), not from polling.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node, Pod
from lightkube.types import PatchType

from kubesvc.controllers.base import Controller, ControllerContext, is_not_found
from kubesvc.controllers.util import ns_name, pod_condition, rfc3339, utcnow

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
PRESSURE_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure")


def _ts(t: Any) -> dt.datetime | None:
    if t is None:
        return None
    if isinstance(t, str):
        t = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def ready_condition(node: Any) -> Any | None:
    for c in (node.status.conditions if node.status else None) or ():
        if c.type == "Ready":
            return c
    return None


def wanted_taints(ready_status: str | None) -> list[dict]:
    if ready_status == "True":
        return []
    key = TAINT_UNREACHABLE if ready_status in (None, "Unknown") else TAINT_NOT_READY
    return [{"key": key, "effect": "NoSchedule"}, {"key": key, "effect": "NoExecute"}]


def toleration_seconds(pod: Any, key: str, default: float) -> float | None:
    """How long the pod stays on a node with this NoExecute taint (None: for ever)."""
    best: float | None = default
    for t in (pod.spec.tolerations if pod.spec else None) or ():
        if t.effect not in (None, "", "NoExecute"):
            continue
        if not ((t.operator == "Exists" and (not t.key or t.key == key)) or t.key == key):
            continue
        if t.tolerationSeconds is None:
            return None
        best = float(t.tolerationSeconds)
    return best


class NodeLifecycleController(Controller):
    """Heartbeat monitoring, not-ready taints, marking pods not ready, eviction."""

    name = "node-lifecycle-controller"

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.recorder = ctx.recorder.for_component("node-controller")
        opts = ctx.options
        self.grace = float(opts.get("node_monitor_grace_period") or 40.0)
        self.eviction = float(opts.get("pod_eviction_timeout") or 300.0)
        self.writes = 0
        self._pods_on: dict[str, set[tuple[str, str]]] = {}
        self._node_of: dict[tuple[str, str], str] = {}

    def setup(self) -> None:
        self.nodes = self.informers.view(Node)
        self.leases = self.informers.view(Lease)
        self.pods = self.informers.view(Pod)
        self.informers.informer(Node).add_handler(
            on_add=self._node_event, on_update=lambda _o, n: self._node_event(n), on_delete=self._node_event)
        self.informers.informer(Lease).add_handler(
            on_add=self._lease_event, on_update=lambda _o, n: self._lease_event(n))
        self.informers.informer(Pod).add_handler(
            on_add=self._pod_event, on_update=lambda _o, n: self._pod_event(n), on_delete=self._pod_deleted)

    def _node_event(self, node: Any) -> None:
        self.queue.add(("", node.metadata.name))

    def _lease_event(self, lease: Any) -> None:
        if lease.metadata.namespace == LEASE_NAMESPACE and self.nodes.get(lease.metadata.name) is not None:
            self.queue.add(("", lease.metadata.name))

    def _pod_event(self, pod: Any) -> None:
        key = ns_name(pod)
        node = pod.spec.nodeName if pod.spec else None
        prev = self._node_of.get(key)
        if prev == node:
            return
        if prev:
            self._pods_on.get(prev, set()).discard(key)
        if node:
            self._pods_on.setdefault(node, set()).add(key)
            self._node_of[key] = node
            n = self.nodes.get(node)
            if n is not None and (ready_condition(n) is None or ready_condition(n).status != "True"):
                self.queue.add(("", node))  # a pod landed on a node that is down
        else:
            self._node_of.pop(key, None)

    def _pod_deleted(self, pod: Any) -> None:
        key = ns_name(pod)
        prev = self._node_of.pop(key, None)
        if prev:
            self._pods_on.get(prev, set()).discard(key)

    def heartbeat(self, node: Any) -> dt.datetime | None:
        times = []
        c = ready_condition(node)
        if c is not None and c.lastHeartbeatTime is not None:
            times.append(_ts(c.lastHeartbeatTime))
        lease = self.leases.get(node.metadata.name, LEASE_NAMESPACE)
        if lease is not None and lease.spec is not None and lease.spec.renewTime is not None:
            times.append(_ts(lease.spec.renewTime))
        if not times:
            created = _ts(node.metadata.creationTimestamp)
            return created
        return max(times)

    async def sync(self, key: tuple[str, str]) -> None:
        node = self.nodes.get(key[1])
        if node is None:
            await self._collect_orphans(key[1])
            return
        now = utcnow()
        hb = self.heartbeat(node)
        age = (now - hb).total_seconds() if hb else self.grace + 1
        ready = ready_condition(node)
        if age > self.grace:
            if ready is None or ready.status != "Unknown":
                node = await self._mark_unknown(node, ready is None)
                ready = ready_condition(node)
        else:
            self.queue.add_after(key, self.grace - age + 0.1)
        status = ready.status if ready is not None else None
        await self._sync_taints(node, wanted_taints(status))
        if status == "True":
            return
        await self._pods_not_ready(node)
        since = _ts(ready.lastTransitionTime) if ready is not None else None
        down_for = (now - since).total_seconds() if since else 0.0
        await self._evict(node, down_for)

    async def _collect_orphans(self, node_name: str) -> None:
        """The node object is gone: its pods can never finish on it. Delete them at once
        (grace period 0), as kube's pod garbage collector does for orphaned pods."""
        for key in list(self._pods_on.get(node_name, ())):
            try:
                await self.client.delete(Pod, key[1], namespace=key[0], grace_period=0)
            except Exception as err:
                if not is_not_found(err):
                    raise
                continue
            self.writes += 1
            pod = self.pods.get(key[1], key[0])
            if pod is not None:
                self.pods.record_delete(pod)
                self.recorder.normal(pod, "PodGC", f"Deleted pod {key[0]}/{key[1]} of deleted node {node_name}",
                                     api_version="v1", kind="Pod")

    async def _mark_unknown(self, node: Any, never: bool) -> Any:
        now = rfc3339()
        reason, message = (("NodeStatusNeverUpdated", "Kubelet never posted node status.") if never
                           else ("NodeStatusUnknown", "Kubelet stopped posting node status."))
        conds = [c.to_dict() for c in (node.status.conditions if node.status else None) or ()]
        by_type = {c["type"]: c for c in conds}
        for ctype in ("Ready", *PRESSURE_CONDITIONS):
            c = by_type.get(ctype)
            if c is None:
                if ctype != "Ready" and by_type:
                    continue
                c = {"type": ctype}
                conds.append(c)
            c.update({"status": "Unknown", "reason": reason, "message": message,
                      "lastTransitionTime": now})
            c.setdefault("lastHeartbeatTime", now)
        obj = await self.client.patch(Node.Status, node.metadata.name, {"status": {"conditions": conds}},
                                      patch_type=PatchType.MERGE)
        self.writes += 1
        self.nodes.record(obj)
        self.recorder.normal(node, "NodeNotReady", f"Node {node.metadata.name} status is now: NodeNotReady",
                             api_version="v1", kind="Node")
        log.info("node %s: no heartbeat for %.0fs: Ready=Unknown", node.metadata.name, self.grace)
        return obj

    async def _sync_taints(self, node: Any, want: list[dict]) -> None:
        cur = [t.to_dict() for t in (node.spec.taints if node.spec else None) or ()]
        ours = {TAINT_NOT_READY, TAINT_UNREACHABLE}
        kept = [t for t in cur if t.get("key") not in ours]
        have = sorted((t["key"], t["effect"]) for t in cur if t.get("key") in ours)
        if have == sorted((t["key"], t["effect"]) for t in want):
            return
        now = rfc3339()
        new = kept + [{**t, **({"timeAdded": now} if t["effect"] == "NoExecute" else {})} for t in want]
        obj = await self.client.patch(Node, node.metadata.name, {"spec": {"taints": new or None}},
                                      patch_type=PatchType.MERGE)
        self.writes += 1
        self.nodes.record(obj)

    async def _pods_not_ready(self, node: Any) -> None:
        for key in list(self._pods_on.get(node.metadata.name, ())):
            pod = self.pods.get(key[1], key[0])
            if pod is None:
                continue
            c = pod_condition(pod, "Ready")
            if c is None or c.status != "True":
                continue
            conds = [x.to_dict() for x in pod.status.conditions]
            for x in conds:
                if x["type"] == "Ready":
                    x.update({"status": "False", "lastTransitionTime": rfc3339()})
            try:
                obj = await self.client.patch(Pod.Status, key[1], {"status": {"conditions": conds}},
                                              namespace=key[0], patch_type=PatchType.MERGE)
            except Exception as err:
                if is_not_found(err):
                    continue
                raise
            self.writes += 1
            self.pods.record(obj)
            self.recorder.warning(pod, "NodeNotReady", "Node is not ready", api_version="v1", kind="Pod")

    async def _evict(self, node: Any, down_for: float) -> None:
        key_taint = TAINT_UNREACHABLE
        ready = ready_condition(node)
        if ready is not None and ready.status == "False":
            key_taint = TAINT_NOT_READY
        soonest = None
        for key in list(self._pods_on.get(node.metadata.name, ())):
            pod = self.pods.get(key[1], key[0])
            if pod is None or pod.metadata.deletionTimestamp is not None:
                continue
            limit = toleration_seconds(pod, key_taint, self.eviction)
            if limit is None:
                continue
            if down_for < limit:
                soonest = limit - down_for if soonest is None else min(soonest, limit - down_for)
                continue
            try:
                await self.client.delete(Pod, key[1], namespace=key[0])
            except Exception as err:
                if not is_not_found(err):
                    raise
            self.writes += 1
            self.pods.record_delete(pod)
            self.recorder.normal(pod, "TaintManagerEviction", f"Marking for deletion Pod {key[0]}/{key[1]}",
                                 api_version="v1", kind="Pod")
        if soonest is not None:
            self.queue.add_after(("", node.metadata.name), soonest + 0.1)
