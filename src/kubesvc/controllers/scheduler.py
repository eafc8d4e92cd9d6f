"""Scheduler: binds pending pods to nodes, as kube-scheduler does for the cases kubesvc needs.

A pod with no spec.nodeName (and schedulerName default-scheduler or unset) is bound to
a Ready, schedulable node whose labels satisfy its nodeSelector and whose NoSchedule
taints it tolerates; among those, the one running the fewest pods (then by name).
Binding goes through the pods/binding subresource (a patch of spec.nodeName if the
server does not serve it). A pod with nowhere to go stays Pending with
PodScheduled=False/Unschedulable and a FailedScheduling event in kube's words
("0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, ...");
it is retried when nodes change.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import msgspec
from lightkube.resources.core_v1 import Node, Pod
from lightkube.types import PatchType

from kubesvc.controllers.base import Controller, ControllerContext, is_not_found
from kubesvc.controllers.util import ns_name, pod_condition, pod_phase, rfc3339

log = logging.getLogger(__name__)

SCHEDULER_NAME = "default-scheduler"


def node_ready(node: Any) -> bool:
    for c in (node.status.conditions if node.status else None) or ():
        if c.type == "Ready":
            return c.status == "True"
    return False


def tolerates(pod: Any, taint: Any) -> bool:
    for t in (pod.spec.tolerations or ()):
        if t.effect and t.effect != taint.effect:
            continue
        if t.operator == "Exists" and (not t.key or t.key == taint.key):
            return True
        if (t.operator in (None, "Equal")) and t.key == taint.key and (t.value or "") == (taint.value or ""):
            return True
    return False


def fit_failure(pod: Any, node: Any) -> str | None:
    """Why the pod cannot go to the node (kube-scheduler's wording), None when it fits."""
    if not node_ready(node):
        return "node(s) were not ready"
    if node.spec and node.spec.unschedulable:
        return "node(s) were unschedulable"
    labels = node.metadata.labels or {}
    for k, v in (pod.spec.nodeSelector or {}).items():
        if labels.get(k) != v:
            return "node(s) didn't match Pod's node affinity/selector"
    for taint in (node.spec.taints if node.spec else None) or ():
        if taint.effect in ("NoSchedule", "NoExecute") and not tolerates(pod, taint):
            return f"node(s) had untolerated taint {{{taint.key}: {taint.value or ''}}}" \
                if taint.value else f"node(s) had untolerated taint {{{taint.key}: }}"
    return None


def unschedulable_message(n_nodes: int, reasons: Counter) -> str:
    if n_nodes == 0:
        return "no nodes available to schedule pods"
    parts = sorted(f"{count} {reason}" for reason, count in reasons.items())
    return f"0/{n_nodes} nodes are available: " + ", ".join(parts) + "." if parts \
        else f"0/{n_nodes} nodes are available."


def needs_scheduling(pod: Any) -> bool:
    spec = pod.spec
    return (spec is not None and not spec.nodeName and pod.metadata.deletionTimestamp is None
            and (spec.schedulerName or SCHEDULER_NAME) == SCHEDULER_NAME
            and pod_phase(pod) not in ("Succeeded", "Failed"))


class Scheduler(Controller):
    """Binds unscheduled pods to nodes."""

    name = "default-scheduler"
    workers = 1  # one binder: placement decisions see each other's results

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.recorder = ctx.recorder.for_component(self.name)
        self.writes = 0
        self._unschedulable: set[tuple[str, str]] = set()
        self._binding_served = True
        self._assumed: dict[tuple[str, str], str] = {}  # pod -> node, until the watch shows it
        self._counts: Counter = Counter()  # node -> pods bound to it (not finished)
        self._binding: set[asyncio.Task] = set()
        self._bind_slots = asyncio.Semaphore(16)
        self._node_of: dict[tuple[str, str], str] = {}

    def setup(self) -> None:
        self.pods = self.informers.view(Pod)
        self.nodes = self.informers.view(Node)
        self.informers.informer(Pod).add_handler(
            on_add=self._pod_event, on_update=lambda _o, n: self._pod_event(n), on_delete=self._pod_deleted)
        self.informers.informer(Node).add_handler(
            on_add=self._nodes_changed, on_update=self._node_updated, on_delete=self._nodes_changed)

    async def stop(self) -> None:
        for t in list(self._binding):
            t.cancel()
        await asyncio.gather(*self._binding, return_exceptions=True)
        await super().stop()

    def _count(self, key: tuple[str, str], pod: Any | None) -> None:
        """Keep pods-per-node counts current from events (no walk over all pods per bind)."""
        node = pod.spec.nodeName if pod is not None and pod.spec else None
        if pod is not None and pod_phase(pod) in ("Succeeded", "Failed"):
            node = None
        prev = self._node_of.get(key)
        if prev == node:
            return
        if prev:
            self._counts[prev] -= 1
            if self._counts[prev] <= 0:
                del self._counts[prev]
            del self._node_of[key]
        if node:
            self._counts[node] += 1
            self._node_of[key] = node

    def _pod_event(self, pod: Any) -> None:
        key = ns_name(pod)
        self._count(key, pod)
        if pod.spec and pod.spec.nodeName:
            self._assumed.pop(key, None)
        if needs_scheduling(pod):
            self.queue.add(key)

    def _pod_deleted(self, pod: Any) -> None:
        key = ns_name(pod)
        self._count(key, None)
        self._assumed.pop(key, None)
        self._unschedulable.discard(key)
        if self._unschedulable and pod.spec and pod.spec.nodeName:
            self._nodes_changed(None)  # room freed

    def _node_updated(self, old: Any, new: Any) -> None:
        if (old.metadata.labels, old.spec, node_ready(old)) != (new.metadata.labels, new.spec, node_ready(new)):
            self._nodes_changed(new)

    def _nodes_changed(self, _node: Any) -> None:
        for key in list(self._unschedulable):
            self.queue.add(key)

    def pods_per_node(self) -> Counter:
        counts = Counter(self._counts)
        for node in self._assumed.values():
            counts[node] += 1
        return counts

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        pod = self.pods.get(name, ns)
        if pod is None or not needs_scheduling(pod) or key in self._assumed:
            self._unschedulable.discard(key)
            return
        nodes = sorted(self.nodes.list(), key=lambda n: n.metadata.name)
        reasons: Counter = Counter()
        fits = []
        for node in nodes:
            why = fit_failure(pod, node)
            if why is None:
                fits.append(node)
            else:
                reasons[why] += 1
        if not fits:
            await self._mark_unschedulable(pod, unschedulable_message(len(nodes), reasons))
            return
        counts = self.pods_per_node()
        node = min(fits, key=lambda n: (counts[n.metadata.name], n.metadata.name))
        # As kube-scheduler: the scheduling cycle assumes the placement (so the next pod
        # sees it) and the binding cycle runs on its own, many at once.
        self._unschedulable.discard(key)
        self._assumed[key] = node.metadata.name
        task = asyncio.create_task(self._binding_cycle(pod, node.metadata.name))
        self._binding.add(task)
        task.add_done_callback(self._binding.discard)

    async def _binding_cycle(self, pod: Any, node: str) -> None:
        key = ns_name(pod)
        async with self._bind_slots:
            try:
                await self._bind(pod, node)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - forget the assumption, try again later
                log.warning("binding %s/%s to %s failed: %s", key[0], key[1], node, err)
                self._assumed.pop(key, None)
                self.queue.add_rate_limited(key)
                return
        self.recorder.normal(pod, "Scheduled", f"Successfully assigned {key[0]}/{key[1]} to {node}",
                             api_version="v1", kind="Pod")

    async def _bind(self, pod: Any, node: str) -> None:
        ns, name = ns_name(pod)
        if self._binding_served:
            body = {"apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
            try:
                await self.client.create(Pod.Binding.from_dict(body), name=name, namespace=ns)
                self.writes += 1
                return
            except msgspec.ValidationError:
                # kube-apiserver answers a binding with a Status (201, Success), which
                # lightkube tries to decode as a Binding: the bind itself went through.
                self.writes += 1
                return
            except Exception as err:
                code = getattr(getattr(err, "status", None), "code", None)
                if code not in (404, 405) or self.pods.get(name, ns) is None:
                    raise
                log.info("pods/binding not served (%s); binding by patching spec.nodeName", code)
                self._binding_served = False
        obj = await self.client.patch(Pod, name, {"spec": {"nodeName": node}}, namespace=ns,
                                      patch_type=PatchType.MERGE)
        self.writes += 1
        self.pods.record(obj)

    async def _mark_unschedulable(self, pod: Any, message: str) -> None:
        key = ns_name(pod)
        self._unschedulable.add(key)
        cur = pod_condition(pod, "PodScheduled")
        if cur is not None and cur.status == "False" and cur.reason == "Unschedulable" and cur.message == message:
            return  # already said so; no write, no new event
        now = rfc3339()
        conds = [c.to_dict() for c in (pod.status.conditions if pod.status else None) or ()
                 if c.type != "PodScheduled"]
        conds.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                      "message": message, "lastTransitionTime": now, "lastProbeTime": None})
        try:
            obj = await self.client.patch(Pod.Status, pod.metadata.name,
                                          {"status": {"conditions": conds}},
                                          namespace=pod.metadata.namespace, patch_type=PatchType.MERGE)
            self.writes += 1
            self.pods.record(obj)
        except Exception as err:
            if not is_not_found(err):
                raise
            return
        self.recorder.warning(pod, "FailedScheduling", message, api_version="v1", kind="Pod")
