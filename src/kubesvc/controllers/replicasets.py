"""ReplicaSet controller: keeps `spec.replicas` active pods for each ReplicaSet.

Pods are named `<replicaset>-<5 safe random chars>` (generateName), carry the template's
labels and annotations and an ownerReference to the ReplicaSet with controller=true and
blockOwnerDeletion=true, so the API server's garbage collector deletes them with it.
Surplus pods are deleted in kube's order (unscheduled, pending, not ready, newest
first). Status (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
observedGeneration) is written through /status only when it changed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lightkube.resources.apps_v1 import ReplicaSet
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from kubesvc.controllers.base import Controller, ControllerContext, is_not_found
from kubesvc.controllers.util import (controller_of, is_pod_active, is_pod_available, is_pod_ready,
                                      match_label_selector, ns_name, owner_reference, pod_phase,
                                      rand_string, utcnow, pod_condition)

log = logging.getLogger(__name__)

BURST_REPLICAS = 500  # kube creates/deletes at most this many pods per sync


def pod_from_template(rs: Any) -> dict:
    tpl = rs.spec.template.to_dict() if rs.spec.template else {}
    md = tpl.get("metadata") or {}
    prefix = rs.metadata.name + "-" if len(rs.metadata.name) < 58 else rs.metadata.name[:57] + "-"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": prefix + rand_string(5),
            "generateName": prefix,
            "namespace": rs.metadata.namespace,
            "labels": dict(md.get("labels") or {}),
            **({"annotations": dict(md["annotations"])} if md.get("annotations") else {}),
            "ownerReferences": [owner_reference(rs, "apps/v1", "ReplicaSet")],
        },
        "spec": tpl.get("spec") or {},
    }


def deletion_rank(pod: Any) -> tuple:
    """Lower sorts first = deleted first (controller.ActivePods ordering, simplified)."""
    node = pod.spec.nodeName if pod.spec else None
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(pod_phase(pod), 1)
    ready = pod_condition(pod, "Ready")
    ready_since = ready.lastTransitionTime.timestamp() if ready is not None and ready.status == "True" \
        and ready.lastTransitionTime else 0.0
    created = pod.metadata.creationTimestamp.timestamp() if pod.metadata.creationTimestamp else 0.0
    return (bool(node), phase_rank, is_pod_ready(pod), -ready_since, -created)


class ReplicaSetController(Controller):
    """ReplicaSet -> Pods."""

    name = "replicaset-controller"
    workers = 5  # kube-controller-manager's default --concurrent-*-syncs

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.recorder = ctx.recorder.for_component(self.name)
        self.writes = 0

    def setup(self) -> None:
        self.replicasets = self.informers.view(ReplicaSet)
        self.pods = self.informers.view(Pod)
        self.pod_labels = self.informers.label_index(Pod)
        self._owned: dict[str, set[tuple[str, str]]] = {}  # ReplicaSet uid -> its pods
        self._owner_of: dict[tuple[str, str], str] = {}
        self.informers.informer(ReplicaSet).add_handler(
            on_add=self._enqueue, on_update=lambda o, n: self._rs_updated(o, n), on_delete=self._enqueue)
        self.informers.informer(Pod).add_handler(
            on_add=self._pod_event, on_update=self._pod_updated, on_delete=self._pod_deleted)

    def _enqueue(self, rs: Any) -> None:
        self.queue.add(ns_name(rs))

    def _rs_updated(self, old: Any, new: Any) -> None:
        if old.metadata.resourceVersion != new.metadata.resourceVersion:
            self.queue.add(ns_name(new))

    def _index(self, pod: Any) -> None:
        key = ns_name(pod)
        ref = controller_of(pod)
        uid = ref.uid if ref is not None else None
        prev = self._owner_of.get(key)
        if prev == uid:
            return
        if prev is not None:
            self._owned.get(prev, set()).discard(key)
            self._owner_of.pop(key, None)
        if uid is not None:
            self._owned.setdefault(uid, set()).add(key)
            self._owner_of[key] = uid

    def _pod_event(self, pod: Any) -> None:
        self._index(pod)
        ns = pod.metadata.namespace or ""
        ref = controller_of(pod)
        if ref is not None:
            if ref.kind == "ReplicaSet":
                self.queue.add((ns, ref.name))
        elif pod.metadata.deletionTimestamp is None:
            # an orphan: a ReplicaSet whose selector matches may adopt it
            for rs in self.replicasets.list(ns):
                if selector_matches(rs, pod):
                    self.queue.add((ns, rs.metadata.name))

    def _pod_updated(self, old: Any, new: Any) -> None:
        self._pod_event(new)
        if old.metadata.labels != new.metadata.labels and controller_of(new) is None:
            ref = controller_of(old)
            if ref is not None and ref.kind == "ReplicaSet":
                self.queue.add((new.metadata.namespace or "", ref.name))

    def _pod_deleted(self, pod: Any) -> None:
        key = ns_name(pod)
        prev = self._owner_of.pop(key, None)
        if prev is not None:
            self._owned.get(prev, set()).discard(key)
        ref = controller_of(pod)
        if ref is not None and ref.kind == "ReplicaSet":
            self.queue.add((key[0], ref.name))

    def owned_pods(self, rs: Any) -> list[Any]:
        uid = rs.metadata.uid
        out = []
        for key in list(self._owned.get(uid, ())):
            p = self.pods.get(key[1], key[0])
            if p is not None and (ref := controller_of(p)) is not None and ref.uid == uid:
                out.append(p)
        return out

    def orphans(self, rs: Any) -> list[Any]:
        ns = rs.metadata.namespace or ""
        sel = rs.spec.selector
        ml = (sel.matchLabels if sel is not None else None) or {}
        if ml:
            cands = (self.pods.get(n, ns) for n in self.pod_labels.select(ns, ml))
        else:
            cands = iter(self.pods.list(ns))
        return [p for p in cands if p is not None and controller_of(p) is None
                and p.metadata.deletionTimestamp is None and is_pod_active(p) and selector_matches(rs, p)]

    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        rs = self.replicasets.get(name, ns)
        if rs is None or rs.metadata.deletionTimestamp is not None:
            return  # the garbage collector takes the pods
        await self._claim(rs)
        pods = self.owned_pods(rs)
        active = [p for p in pods if is_pod_active(p)]
        want = rs.spec.replicas if rs.spec.replicas is not None else 1
        diff = len(active) - want
        if diff < 0:
            await self._create(rs, min(-diff, BURST_REPLICAS))
        elif diff > 0:
            victims = sorted(active, key=deletion_rank)[:min(diff, BURST_REPLICAS)]
            await self._delete(rs, victims)
        await self._update_status(rs, self.owned_pods(rs))

    async def _claim(self, rs: Any) -> None:
        """ControllerRefManager: release owned pods the selector no longer matches, adopt
        orphans it does (strategic merge patches on ownerReferences, uid-guarded)."""
        for p in self.owned_pods(rs):
            if not selector_matches(rs, p) and p.metadata.deletionTimestamp is None:
                await self._patch_owner(p, {"$patch": "delete", "uid": rs.metadata.uid})
        for p in self.orphans(rs):
            await self._patch_owner(p, owner_reference(rs, "apps/v1", "ReplicaSet"))

    async def _patch_owner(self, pod: Any, ref: dict) -> None:
        try:
            obj = await self.client.patch(Pod, pod.metadata.name,
                                          {"metadata": {"ownerReferences": [ref], "uid": pod.metadata.uid}},
                                          namespace=pod.metadata.namespace, patch_type=PatchType.STRATEGIC)
        except Exception as err:
            if is_not_found(err):
                return
            raise
        self.writes += 1
        self.pods.record(obj)
        self._index(obj)

    async def _create(self, rs: Any, n: int) -> None:
        """Create n pods in slow-start batches (1, 2, 4, ...) as kube does: a template the
        server refuses fails once, not n times."""
        batch, left = 1, n
        while left > 0:
            size = min(batch, left)
            results = await asyncio.gather(*(self._create_one(rs) for _ in range(size)), return_exceptions=True)
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                raise errors[0]
            left -= size
            batch *= 2

    async def _create_one(self, rs: Any) -> None:
        body = pod_from_template(rs)
        for attempt in range(3):
            try:
                pod = await self.client.create(Pod.from_dict(body), namespace=rs.metadata.namespace)
                break
            except Exception as err:
                # a name clash with the random suffix: draw again
                if getattr(getattr(err, "status", None), "code", None) == 409 and attempt < 2:
                    body["metadata"]["name"] = body["metadata"]["generateName"] + rand_string(5)
                    continue
                self.recorder.warning(rs, "FailedCreate", f"Error creating: {err}",
                                      api_version="apps/v1", kind="ReplicaSet")
                raise
        self.writes += 1
        self.pods.record(pod)
        self._index(pod)
        self.recorder.normal(rs, "SuccessfulCreate", f"Created pod: {pod.metadata.name}",
                             api_version="apps/v1", kind="ReplicaSet")

    async def _delete(self, rs: Any, victims: list[Any]) -> None:
        for pod in victims:
            try:
                await self.client.delete(Pod, pod.metadata.name, namespace=pod.metadata.namespace)
                self.writes += 1
            except Exception as err:
                if not is_not_found(err):
                    self.recorder.warning(rs, "FailedDelete", f"Error deleting: {err}",
                                          api_version="apps/v1", kind="ReplicaSet")
                    raise
            self.pods.record_delete(pod)
            self.recorder.normal(rs, "SuccessfulDelete", f"Deleted pod: {pod.metadata.name}",
                                 api_version="apps/v1", kind="ReplicaSet")

    async def _update_status(self, rs: Any, pods: list[Any]) -> None:
        active = [p for p in pods if is_pod_active(p)]
        min_ready = rs.spec.minReadySeconds or 0
        now = utcnow()
        tpl_labels = (rs.spec.template.metadata.labels if rs.spec.template and rs.spec.template.metadata
                      else None) or {}
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(1 for p in active
                                        if all((p.metadata.labels or {}).get(k) == v for k, v in tpl_labels.items())),
            "readyReplicas": sum(1 for p in active if is_pod_ready(p)),
            "availableReplicas": sum(1 for p in active if is_pod_available(p, min_ready, now)),
            "observedGeneration": rs.metadata.generation or 0,
        }
        if min_ready and status["readyReplicas"] > status["availableReplicas"]:
            self.queue.add_after(ns_name(rs), min_ready)  # re-check when they become available
        cur = rs.status.to_dict() if rs.status else {}
        cur_cmp = {k: cur.get(k) or 0 for k in status}
        if cur_cmp == status:
            return
        patch = {"status": {k: v for k, v in status.items()}}
        obj = await self.client.patch(ReplicaSet.Status, rs.metadata.name, patch,
                                      namespace=rs.metadata.namespace, patch_type=PatchType.MERGE)
        self.writes += 1
        self.replicasets.record(obj)


def selector_matches(rs: Any, pod: Any) -> bool:
    return match_label_selector(rs.spec.selector, pod.metadata.labels)
