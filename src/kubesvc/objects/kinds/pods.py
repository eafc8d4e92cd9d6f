"""Pods as kube-apiserver keeps them: defaults (including what the ServiceAccount,
DefaultTolerationSeconds and Priority admission plugins add), Pending status on
create, and the update rule that only images, activeDeadlineSeconds and
tolerations may change."""

from __future__ import annotations

import copy

from kubesvc.objects.errors import FieldError, forbidden
from kubesvc.objects.kinds.podspec import default_pod_spec, validate_pod_spec
from kubesvc.objects.strategy import STRATEGIES, Strategy

_DEFAULT_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
)

_UPDATE_FORBIDDEN = ("pod updates may not change fields other than `spec.containers[*].image`,"
                     "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                     "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                     "(allow it to be set to 1 if it was previously negative)")


def qos_class(spec: dict) -> str:
    """BestEffort / Burstable / Guaranteed from the containers' resources (GetPodQOS, simplified)."""
    containers = spec.get("containers") or []
    any_set = False
    guaranteed = bool(containers)
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and req[r] != lim[r]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


class PodStrategy(Strategy):
    """registry/core/pod.podStrategy, for what kubesvc serves."""

    def prepare_for_create(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}

    def default(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        default_pod_spec(spec)
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        tol = spec.setdefault("tolerations", [])
        for t in _DEFAULT_TOLERATIONS:
            if not any(x.get("key") == t["key"] and x.get("effect", "NoExecute") == "NoExecute" for x in tol):
                tol.append(copy.deepcopy(t))
        status = obj.get("status")
        if isinstance(status, dict) and "qosClass" not in status and status.get("phase"):
            status["qosClass"] = qos_class(spec)

    def validate(self, obj: dict) -> list[FieldError]:
        return validate_pod_spec(obj.get("spec"), "spec")

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = self.validate(obj)
        new_spec, old_spec = copy.deepcopy(obj.get("spec") or {}), copy.deepcopy(old.get("spec") or {})
        for s in (new_spec, old_spec):
            for key in ("containers", "initContainers"):
                for c in s.get(key) or []:
                    c.pop("image", None)
            s.pop("activeDeadlineSeconds", None)
            s.pop("tolerations", None)
        if new_spec != old_spec:
            errs.append(forbidden("spec", _UPDATE_FORBIDDEN))
        return errs


STRATEGIES[("", "Pod")] = PodStrategy()
