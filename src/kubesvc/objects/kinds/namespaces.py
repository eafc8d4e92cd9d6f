"""Namespaces: the kubernetes finalizer, Active phase, and the
kubernetes.io/metadata.name label kube-apiserver adds."""

from __future__ import annotations

from kubesvc.objects.errors import FieldError
from kubesvc.objects.strategy import STRATEGIES, Strategy


class NamespaceStrategy(Strategy):
    """registry/core/namespace.namespaceStrategy."""

    def prepare_for_create(self, obj: dict) -> None:
        obj["status"] = {"phase": "Active"}
        spec = obj.setdefault("spec", {})
        fins = spec.setdefault("finalizers", [])
        if "kubernetes" not in fins:
            fins.append("kubernetes")

    def prepare_for_update(self, obj: dict, old: dict) -> None:
        # spec.finalizers change only through /finalize.
        obj["spec"] = old.get("spec") or {}

    def default(self, obj: dict) -> None:
        name = (obj.get("metadata") or {}).get("name")
        if name:
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name

    def validate(self, obj: dict) -> list[FieldError]:
        return []


STRATEGIES[("", "Namespace")] = NamespaceStrategy()
