"""The kinds kubesvc serves: one table every component agrees on.

The API server builds its routes and discovery documents from it, the table
printers and protobuf decoders are keyed by it, and clients use it to map a
kind to its URL. Adding a kind starts here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ResourceType:
    """One served resource (a kind at a group/version), as discovery lists it."""

    group: str  # "" for the core (legacy) group
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # e.g. ("status", "scale")
    verbs: tuple[str, ...] = (
        "create", "delete", "deletecollection", "get", "list", "patch", "update", "watch",
    )
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        """The apiVersion field of objects of this kind."""
        return self.group_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def collection_path(self, namespace: str | None = None) -> str:
        """The URL path of the collection (all namespaces when namespace is None)."""
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            return f"{prefix}/namespaces/{namespace}/{self.plural}"
        return f"{prefix}/{self.plural}"

    def object_path(self, name: str, namespace: str | None = None) -> str:
        return f"{self.collection_path(namespace)}/{name}"


_ALL = ("all",)

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "Namespace", "namespaces", "namespace", False, ("ns",),
                 subresources=("status", "finalize")),
    ResourceType("", "v1", "Service", "services", "service", True, ("svc",), _ALL,
                 subresources=("status",)),
    ResourceType("", "v1", "Endpoints", "endpoints", "endpoints", True, ("ep",)),
    ResourceType("", "v1", "Pod", "pods", "pod", True, ("po",), _ALL,
                 subresources=("status", "log", "binding")),
    ResourceType("", "v1", "Node", "nodes", "node", False, ("no",), subresources=("status",)),
    ResourceType("", "v1", "Event", "events", "event", True, ("ev",)),
    ResourceType("", "v1", "ConfigMap", "configmaps", "configmap", True, ("cm",)),
    ResourceType("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", True),
    ResourceType("apps", "v1", "Deployment", "deployments", "deployment", True, ("deploy",), _ALL,
                 subresources=("status", "scale")),
    ResourceType("apps", "v1", "ReplicaSet", "replicasets", "replicaset", True, ("rs",), _ALL,
                 subresources=("status", "scale")),
    ResourceType("coordination.k8s.io", "v1", "Lease", "leases", "lease", True),
)

# Preferred order of groups in discovery, as kube-apiserver lists them.
GROUP_ORDER: tuple[str, ...] = ("", "apps", "coordination.k8s.io", "discovery.k8s.io")

_BY_PLURAL = {(r.group, r.plural): r for r in RESOURCES}
_BY_KIND = {(r.group, r.kind): r for r in RESOURCES}


def by_plural(group: str, plural: str) -> ResourceType | None:
    return _BY_PLURAL.get((group, plural))


def by_kind(group: str, kind: str) -> ResourceType | None:
    return _BY_KIND.get((group, kind))


def by_api_version(api_version: str, kind: str) -> ResourceType | None:
    """The resource for an object's apiVersion and kind (e.g. "apps/v1", "Deployment")."""
    group, _, version = api_version.rpartition("/")
    r = by_kind(group, kind)
    return r if r is not None and r.version == version else None


def groups() -> list[tuple[str, list[ResourceType]]]:
    """Served groups in discovery order, each with its resources."""
    return [(g, [r for r in RESOURCES if r.group == g]) for g in GROUP_ORDER]
