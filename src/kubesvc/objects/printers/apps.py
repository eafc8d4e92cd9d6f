"""Deployment, ReplicaSet and Scale rows (printDeployment, printReplicaSet, printScale)."""

from __future__ import annotations

from kubesvc.objects.printers.base import (APPS, META, Cells, Column, Printer, age, age_column, doc,
                                           format_label_selector, layout_containers, name,
                                           name_column, selector_string)

_CONTAINERS = "Names of each container in the template."
_IMAGES = "Images referenced by each container in the template."


def _containers(obj: dict) -> list[dict]:
    return (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []


def deployment_row(d: dict, now: float) -> tuple[Cells, None]:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    names, images = layout_containers(_containers(d))
    # replicas is defaulted to 1 by the API; a missing value prints as the Go zero value
    return [name(d), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0), age(d, now),
            names, images, selector_string(spec.get("selector"))], None


def replicaset_row(rs: dict, now: float) -> tuple[Cells, None]:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    names, images = layout_containers(_containers(rs))
    return [name(rs), spec.get("replicas", 0), status.get("replicas", 0), status.get("readyReplicas", 0),
            age(rs, now), names, images, format_label_selector(spec.get("selector"))], None


DEPLOYMENT = Printer((
    name_column(),
    Column("Ready", "string", "Number of the pod with ready state"),
    Column("Up-to-date", "string", doc(APPS + "DeploymentStatus", "updatedReplicas")),
    Column("Available", "string", doc(APPS + "DeploymentStatus", "availableReplicas")),
    age_column(),
    Column("Containers", "string", _CONTAINERS, priority=1),
    Column("Images", "string", _IMAGES, priority=1),
    Column("Selector", "string", doc(APPS + "DeploymentSpec", "selector"), priority=1),
), deployment_row)

REPLICA_SET = Printer((
    name_column(),
    Column("Desired", "integer", doc(APPS + "ReplicaSetSpec", "replicas")),
    Column("Current", "integer", doc(APPS + "ReplicaSetStatus", "replicas")),
    Column("Ready", "integer", doc(APPS + "ReplicaSetStatus", "readyReplicas")),
    age_column(),
    Column("Containers", "string", _CONTAINERS, priority=1),
    Column("Images", "string", _IMAGES, priority=1),
    Column("Selector", "string", doc(APPS + "ReplicaSetSpec", "selector"), priority=1),
), replicaset_row)

def scale_row(scale: dict, now: float) -> tuple[Cells, None]:
    return [name(scale), (scale.get("spec") or {}).get("replicas", 0),
            (scale.get("status") or {}).get("replicas", 0), age(scale, now)], None


_SCALE = "io.k8s.api.autoscaling.v1."

# `kubectl get deploy NAME --subresource=scale`; kube-apiserver's Name column here has no "name" format
SCALE = Printer((
    Column("Name", "string", doc(META, "name")),
    Column("Desired", "integer", doc(_SCALE + "ScaleSpec", "replicas")),
    Column("Available", "integer", doc(_SCALE + "ScaleStatus", "replicas")),
    age_column(),
), scale_row)

PRINTERS = {
    ("apps", "Deployment"): DEPLOYMENT,
    ("apps", "ReplicaSet"): REPLICA_SET,
    ("autoscaling", "Scale"): SCALE,
}
