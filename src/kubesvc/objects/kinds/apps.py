"""Deployments and ReplicaSets (apps/v1) as kube-apiserver keeps them: defaults
(replicas, strategy, revisionHistoryLimit, progressDeadlineSeconds, the pod
template's spec), and validation (selector required, matching the template's
labels, immutable)."""

from __future__ import annotations

from kubesvc.objects.errors import FieldError, invalid, required
from kubesvc.objects.kinds.podspec import default_pod_spec, validate_pod_spec
from kubesvc.objects.meta import validate_labels
from kubesvc.objects.selectors import from_label_selector
from kubesvc.objects.strategy import STRATEGIES, Strategy


def _go_map(d: dict) -> str:
    return "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(d.items())) + "}"


class _GoText:
    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text


def _go_selector(sel: dict) -> str:
    ml = sel.get("matchLabels")
    ml_s = _go_map(ml) if ml else "map[string]string(nil)"
    me = sel.get("matchExpressions")
    me_s = "[]v1.LabelSelectorRequirement(nil)" if not me else "[]v1.LabelSelectorRequirement{...}"
    return f"v1.LabelSelector{{MatchLabels:{ml_s}, MatchExpressions:{me_s}}}"


def validate_selector_and_template(obj: dict) -> list[FieldError]:
    spec = obj.get("spec") or {}
    errs: list[FieldError] = []
    replicas = spec.get("replicas")
    if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
        errs.append(invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
    sel = spec.get("selector")
    if not sel:
        errs.append(required("spec.selector"))
    elif not (sel.get("matchLabels") or sel.get("matchExpressions")):
        errs.append(invalid("spec.selector", _GoText(_go_selector(sel)),
                            "empty selector is invalid for deployment"))
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    errs.extend(validate_labels(labels, "spec.template.metadata.labels"))
    if sel and (sel.get("matchLabels") or sel.get("matchExpressions")):
        try:
            ok = from_label_selector(sel).matches(labels)
        except Exception:
            ok = False
        if not ok:
            errs.append(invalid("spec.template.metadata.labels", _GoText(_go_map(labels)),
                                "`selector` does not match template `labels`"))
    errs.extend(validate_pod_spec(template.get("spec"), "spec.template.spec"))
    rp = ((template.get("spec") or {}).get("restartPolicy"))
    if rp is not None and rp != "Always":
        from kubesvc.objects.errors import not_supported
        errs.append(not_supported("spec.template.spec.restartPolicy", rp, ["Always"]))
    return errs


class _AppsStrategy(Strategy):
    def prepare_for_create(self, obj: dict) -> None:
        obj["status"] = {}

    def default(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        template = spec.setdefault("template", {})
        template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        default_pod_spec(template.setdefault("spec", {}))
        # apps/v1 requires a selector; it is not defaulted from the template's labels.

    def validate(self, obj: dict) -> list[FieldError]:
        return validate_selector_and_template(obj)

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = self.validate(obj)
        new_sel, old_sel = (obj.get("spec") or {}).get("selector"), (old.get("spec") or {}).get("selector")
        if new_sel != old_sel and new_sel:
            errs.append(invalid("spec.selector", _GoText(_go_selector(new_sel)), "field is immutable"))
        return errs


class DeploymentStrategy(_AppsStrategy):
    """registry/apps/deployment.deploymentStrategy + SetDefaults_Deployment."""

    def default(self, obj: dict) -> None:
        super().default(obj)
        spec = obj["spec"]
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)

    def validate(self, obj: dict) -> list[FieldError]:
        errs = super().validate(obj)
        st = ((obj.get("spec") or {}).get("strategy") or {})
        if st.get("type") not in ("RollingUpdate", "Recreate"):
            from kubesvc.objects.errors import not_supported
            errs.append(not_supported("spec.strategy.type", st.get("type"), ["Recreate", "RollingUpdate"]))
        elif st.get("type") == "Recreate" and st.get("rollingUpdate"):
            from kubesvc.objects.errors import forbidden
            errs.append(forbidden("spec.strategy.rollingUpdate",
                                  "may not be specified when strategy `type` is 'Recreate'"))
        return errs


class ReplicaSetStrategy(_AppsStrategy):
    """registry/apps/replicaset.rsStrategy + SetDefaults_ReplicaSet."""

    # ReplicaSetStatus.replicas is not omitempty: kube-apiserver always shows it.
    def prepare_for_create(self, obj: dict) -> None:
        obj["status"] = {"replicas": 0}

    def prepare_for_status_update(self, obj: dict, old: dict) -> None:
        status = obj.get("status")
        if isinstance(status, dict):
            status.setdefault("replicas", 0)
        else:
            obj["status"] = {"replicas": 0}


STRATEGIES[("apps", "Deployment")] = DeploymentStrategy()
STRATEGIES[("apps", "ReplicaSet")] = ReplicaSetStrategy()
