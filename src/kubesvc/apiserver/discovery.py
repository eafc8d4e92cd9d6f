"""Discovery documents, as kube-apiserver serves them, built once from objects.registry.

Owns /version, /api, /apis, /api/v1, /apis/G, /apis/G/V and the aggregated
discovery (apidiscovery.k8s.io/v2 APIGroupDiscoveryList) that kubectl 1.26+
asks for first on /api and /apis.
"""

from __future__ import annotations

import hashlib
import platform

from kubesvc.objects.registry import GROUP_ORDER, ResourceType, groups

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-kubesvc",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-11-26T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": f"linux/{'arm64' if platform.machine() in ('aarch64', 'arm64') else 'amd64'}",
}

# subresource -> (group, version, kind or None for the parent kind, verbs)
_SUB = {
    "status": (None, None, None, ("get", "patch", "update")),
    "scale": ("autoscaling", "v1", "Scale", ("get", "patch", "update")),
    "log": ("", "v1", None, ("get",)),
    "binding": ("", "v1", "Binding", ("create",)),
    "finalize": (None, None, None, ("update",)),
}


def _hash(rt: ResourceType) -> str:
    import base64
    return base64.b64encode(hashlib.sha256(f"{rt.group}/{rt.version}/{rt.kind}".encode()).digest()[:8]).decode()


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group_entry(group: str, version: str) -> dict:
    gv = {"groupVersion": f"{group}/{version}", "version": version}
    return {"name": group, "versions": [gv], "preferredVersion": gv}


def api_group_list() -> dict:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group_entry(g, rts[0].version) for g, rts in groups() if g]}


def api_group(group: str) -> dict | None:
    for g, rts in groups():
        if g == group and g:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(g, rts[0].version)}
    return None


def api_resource_list(group: str, version: str) -> dict | None:
    for g, rts in groups():
        if g != group or not rts or rts[0].version != version:
            continue
        resources = []
        for rt in rts:
            r = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced, "kind": rt.kind,
                 "verbs": list(rt.verbs)}
            if rt.short_names:
                r["shortNames"] = list(rt.short_names)
            if rt.categories:
                r["categories"] = list(rt.categories)
            r["storageVersionHash"] = _hash(rt)
            resources.append(r)
            for sub in rt.subresources:
                sg, sv, sk, verbs = _SUB[sub]
                e = {"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced,
                     "kind": sk or rt.kind, "verbs": list(verbs)}
                if sg is not None and (sg, sv) != (rt.group, rt.version):
                    e["group"], e["version"] = sg, sv
                resources.append(e)
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": rts[0].group_version,
                "resources": resources}
    return None


def _aggregated_resource(rt: ResourceType) -> dict:
    r = {"resource": rt.plural,
         "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
         "scope": "Namespaced" if rt.namespaced else "Cluster",
         "singularResource": rt.singular,
         "verbs": list(rt.verbs)}
    if rt.short_names:
        r["shortNames"] = list(rt.short_names)
    if rt.categories:
        r["categories"] = list(rt.categories)
    subs = []
    for sub in rt.subresources:
        sg, sv, sk, verbs = _SUB[sub]
        subs.append({"subresource": sub,
                     "responseKind": {"group": rt.group if sg is None else sg,
                                      "version": rt.version if sv is None else sv,
                                      "kind": sk or rt.kind},
                     "verbs": list(verbs)})
    if subs:
        r["subresources"] = subs
    return r


def aggregated(core: bool, version: str = "v2") -> dict:
    """APIGroupDiscoveryList for /api (core=True) or /apis."""
    items = []
    for g, rts in groups():
        if (g == "") != core or not rts:
            continue
        md = {"creationTimestamp": None}
        if g:
            md["name"] = g
        items.append({"metadata": md,
                      "versions": [{"version": rts[0].version,
                                    "resources": [_aggregated_resource(rt) for rt in rts],
                                    "freshness": "Current"}]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}


def aggregated_content_type(version: str) -> str:
    return f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"


__all__ = ["VERSION", "api_versions", "api_group_list", "api_group", "api_resource_list", "aggregated",
           "aggregated_content_type", "GROUP_ORDER"]
