"""Deployment controller: Deployment -> ReplicaSets, rolled out as kube's deployment
controller does.

The ReplicaSet for the current template is `<deployment>-<pod-template-hash>` (see
util.pod_template_hash), labelled and selected by that hash. RollingUpdate scales the
new ReplicaSet up within maxSurge and old ones down while keeping
replicas - maxUnavailable available; Recreate scales old ones to zero, waits for their
pods to go, then scales the new one up. Each ReplicaSet carries the revision
annotation (rollout history; going back to an old template gives its ReplicaSet the
next revision); the Deployment's status and its Available/Progressing conditions
follow the ReplicaSets. Writes happen only when something differs.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

from lightkube.resources.apps_v1 import Deployment, ReplicaSet
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from kubesvc.controllers.base import Controller, ControllerContext, is_conflict, is_not_found
from kubesvc.controllers.util import (_strip_empty, controller_of, is_pod_active, ns_name, owner_reference,
                                      pod_template_hash, rfc3339)

log = logging.getLogger(__name__)

HASH_LABEL = "pod-template-hash"
ANN_REVISION = "deployment.kubernetes.io/revision"
ANN_DESIRED = "deployment.kubernetes.io/desired-replicas"
ANN_MAX = "deployment.kubernetes.io/max-replicas"
ANN_REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
# Annotations of the Deployment not copied to its ReplicaSets (deployment/util).
_SKIP_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration", ANN_REVISION,
                     ANN_REVISION_HISTORY, ANN_DESIRED, ANN_MAX, "deprecated.deployment.rollback.to"}


def int_or_percent(v: Any, total: int, round_up: bool) -> int:
    if isinstance(v, int):
        return v
    s = str(v)
    if s.endswith("%"):
        frac = int(s[:-1]) * total / 100
        return math.ceil(frac) if round_up else math.floor(frac)
    return int(s)


def replicas_of(obj: Any) -> int:
    r = obj.spec.replicas if obj.spec else None
    return 1 if r is None else r


def strategy_type(d: Any) -> str:
    st = d.spec.strategy
    return (st.type if st and st.type else None) or "RollingUpdate"


def surge_and_unavailable(d: Any) -> tuple[int, int]:
    """deploymentutil.ResolveFenceposts: surge rounds up, unavailable down, never both 0."""
    if strategy_type(d) != "RollingUpdate":
        return 0, 0
    replicas = replicas_of(d)
    ru = d.spec.strategy.rollingUpdate if d.spec.strategy else None
    surge_v = ru.maxSurge if ru is not None and ru.maxSurge is not None else "25%"
    unav_v = ru.maxUnavailable if ru is not None and ru.maxUnavailable is not None else "25%"
    surge = int_or_percent(surge_v, replicas, True)
    unav = int_or_percent(unav_v, replicas, False)
    if surge == 0 and unav == 0:
        unav = 1
    return surge, unav


def template_dict(tpl: Any, drop_hash: bool = True) -> dict:
    d = tpl.to_dict() if tpl is not None and not isinstance(tpl, dict) else dict(tpl or {})
    if drop_hash:
        md = dict(d.get("metadata") or {})
        labels = dict(md.get("labels") or {})
        labels.pop(HASH_LABEL, None)
        md["labels"] = labels
        d["metadata"] = md
    return _strip_empty(d)


def _age(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        t = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (dt.datetime.now(dt.timezone.utc) - t).total_seconds()


def revision_of(rs: Any) -> int:
    try:
        return int((rs.metadata.annotations or {}).get(ANN_REVISION, "0"))
    except ValueError:
        return 0


def rs_status(rs: Any, field: str) -> int:
    return (getattr(rs.status, field, None) if rs.status else None) or 0


class DeploymentController(Controller):
    """Deployment -> ReplicaSets (rollouts, scaling, revisions, status)."""

    name = "deployment-controller"
    workers = 5  # kube-controller-manager's default --concurrent-*-syncs

    def __init__(self, ctx: ControllerContext):
        super().__init__(ctx)
        self.recorder = ctx.recorder.for_component(self.name)
        self.writes = 0

    def setup(self) -> None:
        self.deployments = self.informers.view(Deployment)
        self.replicasets = self.informers.view(ReplicaSet)
        self.pods = self.informers.view(Pod)
        self.informers.informer(Deployment).add_handler(
            on_add=self._enqueue, on_update=lambda _o, n: self._enqueue(n), on_delete=self._enqueue)
        self.informers.informer(ReplicaSet).add_handler(
            on_add=self._rs_event, on_update=lambda _o, n: self._rs_event(n), on_delete=self._rs_event)
        # Recreate waits for old pods to be gone: their deletion must wake us.
        self.informers.informer(Pod).add_handler(on_delete=self._pod_deleted)

    def _enqueue(self, d: Any) -> None:
        self.queue.add(ns_name(d))

    def _rs_event(self, rs: Any) -> None:
        ref = controller_of(rs)
        if ref is not None and ref.kind == "Deployment":
            self.queue.add((rs.metadata.namespace or "", ref.name))

    def _pod_deleted(self, pod: Any) -> None:
        ref = controller_of(pod)
        if ref is None or ref.kind != "ReplicaSet":
            return
        rs = self.replicasets.get(ref.name, pod.metadata.namespace or "")
        if rs is not None:
            self._rs_event(rs)

    # -- reading -------------------------------------------------------------
    def owned_replicasets(self, d: Any) -> list[Any]:
        uid = d.metadata.uid
        return [rs for rs in self.replicasets.list(d.metadata.namespace or "")
                if (ref := controller_of(rs)) is not None and ref.uid == uid]

    def find_new(self, d: Any, rss: list[Any]) -> Any | None:
        want = template_dict(d.spec.template)
        matches = [rs for rs in rss if template_dict(rs.spec.template) == want]
        matches.sort(key=lambda rs: (rs.metadata.creationTimestamp is None,
                                     rs.metadata.creationTimestamp, rs.metadata.name))
        return matches[0] if matches else None

    # -- sync ----------------------------------------------------------------
    async def sync(self, key: tuple[str, str]) -> None:
        ns, name = key
        d = self.deployments.get(name, ns)
        if d is None or d.metadata.deletionTimestamp is not None:
            return
        rss = self.owned_replicasets(d)
        new = self.find_new(d, rss)
        olds = [rs for rs in rss if new is None or rs.metadata.uid != new.metadata.uid]
        progress_reason = None
        if d.spec.paused:
            await self._sync_status(d, new, olds, None)
            return
        if strategy_type(d) == "Recreate":
            new, progress_reason = await self._rollout_recreate(d, new, olds)
        else:
            new, progress_reason = await self._rollout_rolling(d, new, olds)
        if new is not None:
            await self._sync_revision(d, new, olds)
        await self._sync_status(d, new, olds, progress_reason)
        await self._cleanup(d, new, olds)

    async def _rollout_rolling(self, d: Any, new: Any, olds: list[Any]) -> tuple[Any, str | None]:
        replicas = replicas_of(d)
        surge, unav = surge_and_unavailable(d)
        created = None
        if new is None:
            current = sum(replicas_of(rs) for rs in olds)
            want = max(0, min(replicas + surge - current, replicas)) if olds else replicas
            new = await self._create_new(d, olds, want)
            if new is None:
                return None, None
            created = "NewReplicaSetCreated"
        all_rs = [new, *olds]
        # Scale the new ReplicaSet up (within maxSurge) ...
        new_replicas = replicas_of(new)
        if new_replicas > replicas:
            await self._scale(d, new, replicas)
            return new, created
        if new_replicas < replicas:
            current = sum(replicas_of(rs) for rs in all_rs)
            room = replicas + surge - current
            if room > 0:
                await self._scale(d, new, new_replicas + min(room, replicas - new_replicas))
                return self.replicasets.get(new.metadata.name, new.metadata.namespace) or new, created
        # ... and old ones down while keeping replicas - maxUnavailable available.
        min_available = replicas - unav
        all_pods = sum(replicas_of(rs) for rs in all_rs)
        new_unavailable = max(replicas_of(new) - rs_status(new, "availableReplicas"), 0)
        max_scale_down = all_pods - min_available - new_unavailable
        if max_scale_down > 0:
            olds_sorted = sorted(olds, key=lambda rs: (rs.metadata.creationTimestamp is None,
                                                       rs.metadata.creationTimestamp, rs.metadata.name))
            # cleanupUnhealthyReplicas: old pods that are not available go first
            cleaned = 0
            for rs in olds_sorted:
                if cleaned >= max_scale_down:
                    break
                unhealthy = replicas_of(rs) - rs_status(rs, "availableReplicas")
                if replicas_of(rs) == 0 or unhealthy <= 0:
                    continue
                n = min(max_scale_down - cleaned, unhealthy)
                await self._scale(d, rs, replicas_of(rs) - n)
                cleaned += n
            olds_sorted = [self.replicasets.get(rs.metadata.name, rs.metadata.namespace) or rs
                           for rs in olds_sorted]
            # scaleDownOldReplicaSetsForRollingUpdate
            # A ReplicaSet's status may lag a scale-down we just made: count no more
            # available pods than it is asked to keep, or we would scale down twice.
            available = sum(min(rs_status(rs, "availableReplicas"), replicas_of(rs))
                            for rs in [new, *olds_sorted])
            total = min(available - min_available, max_scale_down - cleaned)
            done = 0
            for rs in olds_sorted:
                if done >= total:
                    break
                if replicas_of(rs) == 0:
                    continue
                n = min(replicas_of(rs), total - done)
                await self._scale(d, rs, replicas_of(rs) - n)
                done += n
        return new, created

    async def _rollout_recreate(self, d: Any, new: Any, olds: list[Any]) -> tuple[Any, str | None]:
        active_olds = [rs for rs in olds if replicas_of(rs) > 0]
        if active_olds:
            for rs in active_olds:
                await self._scale(d, rs, 0)
            return new, None
        old_uids = {rs.metadata.uid for rs in olds}
        for p in self.pods.list(d.metadata.namespace or ""):
            ref = controller_of(p)
            if ref is not None and ref.uid in old_uids and (is_pod_active(p) or p.metadata.deletionTimestamp):
                return new, None  # wait until the old pods are gone
        created = None
        if new is None:
            new = await self._create_new(d, olds, replicas_of(d))
            if new is None:
                return None, None
            created = "NewReplicaSetCreated"
        if replicas_of(new) != replicas_of(d):
            await self._scale(d, new, replicas_of(d))
        return new, created

    # -- writes --------------------------------------------------------------
    async def _create_new(self, d: Any, olds: list[Any], replicas: int) -> Any | None:
        collision = d.status.collisionCount if d.status else None
        h = pod_template_hash(template_dict(d.spec.template), collision)
        tpl = d.spec.template.to_dict()
        tmd = dict(tpl.get("metadata") or {})
        tmd["labels"] = {**(tmd.get("labels") or {}), HASH_LABEL: h}
        tpl["metadata"] = tmd
        sel = d.spec.selector.to_dict() if d.spec.selector else {}
        sel["matchLabels"] = {**(sel.get("matchLabels") or {}), HASH_LABEL: h}
        surge, _ = surge_and_unavailable(d)
        revision = max([revision_of(rs) for rs in olds] + [0]) + 1
        annotations = {k: v for k, v in (d.metadata.annotations or {}).items() if k not in _SKIP_ANNOTATIONS}
        annotations.update({ANN_REVISION: str(revision), ANN_DESIRED: str(replicas_of(d)),
                            ANN_MAX: str(replicas_of(d) + surge)})
        body = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{d.metadata.name}-{h}", "namespace": d.metadata.namespace,
                         "labels": tmd["labels"], "annotations": annotations,
                         "ownerReferences": [owner_reference(d, "apps/v1", "Deployment")]},
            "spec": {"replicas": replicas, "minReadySeconds": d.spec.minReadySeconds or 0,
                     "selector": sel, "template": tpl},
        }
        try:
            rs = await self.client.create(ReplicaSet.from_dict(body), namespace=d.metadata.namespace)
        except Exception as err:
            if not is_conflict(err):
                raise
            # Name taken: ours with the same template (a stale cache) is fine; anything
            # else is a hash collision, resolved as kube does with status.collisionCount.
            existing = await self.client.get(ReplicaSet, body["metadata"]["name"], namespace=d.metadata.namespace)
            ref = controller_of(existing)
            if ref is not None and ref.uid == d.metadata.uid and \
                    template_dict(existing.spec.template) == template_dict(d.spec.template):
                self.replicasets.record(existing)
                return existing
            await self.client.patch(Deployment.Status, d.metadata.name,
                                    {"status": {"collisionCount": (collision or 0) + 1}},
                                    namespace=d.metadata.namespace, patch_type=PatchType.MERGE)
            raise
        self.writes += 1
        self.replicasets.record(rs)
        if replicas > 0:
            self.recorder.normal(d, "ScalingReplicaSet",
                                 f"Scaled up replica set {rs.metadata.name} from 0 to {replicas}",
                                 api_version="apps/v1", kind="Deployment")
        return rs

    async def _scale(self, d: Any, rs: Any, replicas: int) -> None:
        old = replicas_of(rs)
        surge, _ = surge_and_unavailable(d)
        ann = rs.metadata.annotations or {}
        want_ann = {ANN_DESIRED: str(replicas_of(d)), ANN_MAX: str(replicas_of(d) + surge)}
        if old == replicas and all(ann.get(k) == v for k, v in want_ann.items()):
            return
        obj = await self.client.patch(ReplicaSet, rs.metadata.name,
                                      {"metadata": {"annotations": want_ann,
                                                    "resourceVersion": rs.metadata.resourceVersion},
                                       "spec": {"replicas": replicas}},
                                      namespace=rs.metadata.namespace, patch_type=PatchType.MERGE)
        self.writes += 1
        self.replicasets.record(obj)
        if old != replicas:
            verb = "up" if replicas > old else "down"
            self.recorder.normal(d, "ScalingReplicaSet",
                                 f"Scaled {verb} replica set {rs.metadata.name} from {old} to {replicas}",
                                 api_version="apps/v1", kind="Deployment")

    async def _sync_revision(self, d: Any, new: Any, olds: list[Any]) -> None:
        """The new ReplicaSet holds the highest revision; the Deployment mirrors it."""
        max_old = max([revision_of(rs) for rs in olds] + [0])
        rev = revision_of(new)
        # The new ReplicaSet also carries the Deployment's own annotations (e.g.
        # kubernetes.io/change-cause, shown by `kubectl rollout history`), as kube copies them.
        have = new.metadata.annotations or {}
        want = {k: v for k, v in (d.metadata.annotations or {}).items()
                if k not in _SKIP_ANNOTATIONS and have.get(k) != v}
        if rev <= max_old:
            rev = max_old + 1
            want[ANN_REVISION] = str(rev)
        if want:
            obj = await self.client.patch(ReplicaSet, new.metadata.name, {"metadata": {"annotations": want}},
                                          namespace=new.metadata.namespace, patch_type=PatchType.MERGE)
            self.writes += 1
            self.replicasets.record(obj)
        if (d.metadata.annotations or {}).get(ANN_REVISION) != str(rev):
            obj = await self.client.patch(Deployment, d.metadata.name,
                                          {"metadata": {"annotations": {ANN_REVISION: str(rev)}}},
                                          namespace=d.metadata.namespace, patch_type=PatchType.MERGE)
            self.writes += 1
            self.deployments.record(obj)

    async def _sync_status(self, d: Any, new: Any, olds: list[Any], created_reason: str | None) -> None:
        d = self.deployments.get(d.metadata.name, d.metadata.namespace or "") or d
        fresh = lambda rs: self.replicasets.get(rs.metadata.name, rs.metadata.namespace or "") or rs  # noqa: E731
        new = fresh(new) if new is not None else None
        all_rs = [fresh(rs) for rs in olds] + ([new] if new is not None else [])
        replicas = replicas_of(d)
        _, unav = surge_and_unavailable(d)
        status: dict = {
            "observedGeneration": d.metadata.generation or 0,
            "replicas": sum(rs_status(rs, "replicas") for rs in all_rs),
            "updatedReplicas": rs_status(new, "replicas") if new is not None else 0,
            "readyReplicas": sum(rs_status(rs, "readyReplicas") for rs in all_rs),
            "availableReplicas": sum(rs_status(rs, "availableReplicas") for rs in all_rs),
        }
        total_spec = sum(replicas_of(rs) for rs in all_rs)
        status["unavailableReplicas"] = max(total_spec - status["availableReplicas"], 0) \
            if total_spec else max(replicas - status["availableReplicas"], 0)
        if d.status and d.status.collisionCount:
            status["collisionCount"] = d.status.collisionCount
        cur = d.status.to_dict() if d.status else {}
        conds = {c["type"]: c for c in cur.get("conditions") or []}
        now = rfc3339()

        def cond(ctype: str, st: str, reason: str, message: str) -> dict:
            old = conds.get(ctype)
            if old and old.get("status") == st and old.get("reason") == reason and old.get("message") == message:
                return old
            c = {"type": ctype, "status": st, "reason": reason, "message": message,
                 "lastUpdateTime": now, "lastTransitionTime": now}
            if old and old.get("status") == st:
                c["lastTransitionTime"] = old.get("lastTransitionTime", now)
            return c

        if status["availableReplicas"] >= replicas - unav:
            available = cond("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            available = cond("Available", "False", "MinimumReplicasUnavailable",
                             "Deployment does not have minimum availability.")
        progressing = conds.get("Progressing")
        if d.spec.paused:
            progressing = cond("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
        elif new is not None:
            rs_name = new.metadata.name
            complete = (status["updatedReplicas"] == replicas and status["replicas"] == replicas
                        and status["availableReplicas"] == replicas and replicas_of(new) == replicas)
            if complete:
                progressing = cond("Progressing", "True", "NewReplicaSetAvailable",
                                   f'ReplicaSet "{rs_name}" has successfully progressed.')
            elif created_reason:
                progressing = cond("Progressing", "True", "NewReplicaSetCreated",
                                   f'Created new replica set "{rs_name}"')
            else:
                progressing = self._progress(d, rs_name, progressing, status, cur, now)
        status["conditions"] = [c for c in (available, progressing) if c]
        keys = set(status) | {"collisionCount"}
        cur_cmp = {k: cur.get(k) for k in keys if cur.get(k) not in (None, 0)}
        new_cmp = {k: v for k, v in status.items() if v not in (None, 0)}
        if cur_cmp == new_cmp:
            return
        obj = await self.client.patch(Deployment.Status, d.metadata.name, {"status": status},
                                      namespace=d.metadata.namespace, patch_type=PatchType.MERGE)
        self.writes += 1
        self.deployments.record(obj)

    def _progress(self, d: Any, rs_name: str, progressing: dict | None, status: dict, cur: dict,
                  now: str) -> dict:
        """Progressing while the rollout moves (each move refreshes lastUpdateTime); False
        with ProgressDeadlineExceeded once nothing moved for progressDeadlineSeconds."""
        counters = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
        moved = any((cur.get(k) or 0) != (status.get(k) or 0) for k in counters)
        deadline = d.spec.progressDeadlineSeconds
        if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded" \
                and rs_name in progressing.get("message", "") and not moved:
            return progressing
        if moved or progressing is None or rs_name not in progressing.get("message", "") \
                or progressing.get("status") != "True":
            c = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                 "message": f'ReplicaSet "{rs_name}" is progressing.',
                 "lastUpdateTime": now, "lastTransitionTime": now}
            if progressing is not None and progressing.get("status") == "True":
                c["lastTransitionTime"] = progressing.get("lastTransitionTime", now)
            if deadline:
                self.queue.add_after(ns_name(d), deadline + 0.5)
            return c
        if deadline:
            since = _age(progressing.get("lastUpdateTime"))
            if since is not None and since >= deadline:
                return {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                        "message": f'ReplicaSet "{rs_name}" has timed out progressing.',
                        "lastUpdateTime": now, "lastTransitionTime": now}
            if since is not None:
                self.queue.add_after(ns_name(d), deadline - since + 0.5)
        return progressing

    async def _cleanup(self, d: Any, new: Any, olds: list[Any]) -> None:
        """Keep at most revisionHistoryLimit (default 10) scaled-down old ReplicaSets."""
        limit = d.spec.revisionHistoryLimit
        limit = 10 if limit is None else limit
        dead = [rs for rs in olds if replicas_of(rs) == 0 and rs_status(rs, "replicas") == 0
                and rs.metadata.deletionTimestamp is None]
        if len(dead) <= limit:
            return
        dead.sort(key=revision_of)
        for rs in dead[:len(dead) - limit]:
            try:
                await self.client.delete(ReplicaSet, rs.metadata.name, namespace=rs.metadata.namespace)
                self.writes += 1
            except Exception as err:
                if not is_not_found(err):
                    raise
            self.replicasets.record_delete(rs)
