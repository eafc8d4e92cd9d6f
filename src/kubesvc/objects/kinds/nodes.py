"""Nodes: cluster-scoped, status set by the node's agent (allowed on create, as
kube-apiserver allows the kubelet), podCIDR immutable once set."""

from __future__ import annotations

from kubesvc.objects.errors import FieldError, forbidden, invalid
from kubesvc.objects.strategy import STRATEGIES, Strategy


# NodeSystemInfo's string fields have no omitempty: Go writes them even when empty.
_NODE_INFO_FIELDS = ("architecture", "bootID", "containerRuntimeVersion", "kernelVersion", "kubeProxyVersion",
                     "kubeletVersion", "machineID", "operatingSystem", "osImage", "systemUUID")


class NodeStrategy(Strategy):
    """registry/core/node.nodeStrategy."""

    def default_for_storage(self, obj: dict) -> None:
        # What kube-apiserver's Go types always serialise (struct fields, non-omitempty
        # scalars): spec {}, status.daemonEndpoints.kubeletEndpoint.Port and nodeInfo.
        obj.setdefault("spec", {})
        status = obj.get("status")
        if not isinstance(status, dict):
            status = obj["status"] = {}
        endpoints = status.setdefault("daemonEndpoints", {})
        if isinstance(endpoints, dict):
            kubelet = endpoints.setdefault("kubeletEndpoint", {})
            if isinstance(kubelet, dict):
                kubelet.setdefault("Port", 0)
        info = status.setdefault("nodeInfo", {})
        if isinstance(info, dict):
            for f in _NODE_INFO_FIELDS:
                info.setdefault(f, "")

    def validate(self, obj: dict) -> list[FieldError]:
        errs = []
        spec = obj.get("spec") or {}
        cidr = spec.get("podCIDR")
        if cidr:
            import ipaddress
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                errs.append(invalid("spec.podCIDR", cidr, "must be a valid CIDR"))
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = self.validate(obj)
        old_cidr = (old.get("spec") or {}).get("podCIDR")
        new_cidr = (obj.get("spec") or {}).get("podCIDR")
        if old_cidr and new_cidr != old_cidr:
            errs.append(forbidden("spec.podCIDR", "node updates may not change podCIDR except from \"\" to "
                                  "valid"))
        return errs


STRATEGIES[("", "Node")] = NodeStrategy()
