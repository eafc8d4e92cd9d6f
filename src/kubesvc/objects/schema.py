"""The OpenAPI schema of the served kinds, from a maintained package (never written by hand).

kubernetes-validate ships, per Kubernetes release, the cluster's OpenAPI
definitions (``_definitions.json``: every ``io.k8s.*`` type with its
``x-kubernetes-patch-strategy`` / ``x-kubernetes-patch-merge-key`` /
``x-kubernetes-list-type`` extensions). This module owns loading them and
answering the questions the rest of kubesvc asks of a kind's schema: the
definition of a kind, a field's sub-schema and patch strategy, and which fields
of an object the schema does not know (fieldValidation=Strict/Warn, pruning).
The patch code, the OpenAPI documents and strict decoding all read from here.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any, Iterator

from kubesvc.objects.registry import ResourceType

# The release whose schema we serve: the kubectl on the machine is 1.32, and the
# kinds kubesvc serves have not changed shape since.
PREFERRED_RELEASE = "v1.32.0"

_REF_PREFIXES = ("#/$defs/", "/api/_definitions.json#/$defs/", "#/definitions/")


@functools.cache
def release() -> str:
    """The kubernetes-validate schema directory in use (e.g. "v1.32.0-local")."""
    root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    names = sorted(p.name for p in root.iterdir() if p.name.endswith("-local"))
    if not names:
        raise RuntimeError("kubernetes-validate ships no schemas")
    wanted = PREFERRED_RELEASE + "-local"
    if wanted in names:
        return wanted

    def key(name: str) -> tuple[int, ...]:
        return tuple(int(x) for x in name[1:].split("-")[0].split("."))
    return max(names, key=key)


@functools.cache
def definitions() -> dict[str, dict]:
    """All OpenAPI definitions by their fully qualified name (io.k8s.api.core.v1.Service ...)."""
    path = (resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
            .joinpath(release()).joinpath("_definitions.json"))
    doc = json.loads(path.read_text())
    return doc.get("$defs") or doc.get("definitions") or {}


def ref_name(node: dict) -> str | None:
    """The definition name a node refers to, if it is a $ref."""
    ref = node.get("$ref")
    if not ref:
        return None
    for prefix in _REF_PREFIXES:
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref.rsplit("/", 1)[-1]


def resolve(node: dict | None) -> dict | None:
    """Follow $ref (and a single-element allOf) to the definition itself."""
    seen = 0
    while node is not None and seen < 8:
        name = ref_name(node)
        if name is not None:
            node = definitions().get(name)
        elif isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
            node = node["allOf"][0]
        else:
            return node
        seen += 1
    return node


@functools.cache
def _gvk_index() -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], str] = {}
    for name, node in definitions().items():
        for gvk in node.get("x-kubernetes-group-version-kind") or ():
            out.setdefault((gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", "")), name)
    return out


def definition_name(group: str, version: str, kind: str) -> str | None:
    """The definition name of a kind (e.g. ("", "v1", "Service") -> io.k8s.api.core.v1.Service)."""
    return _gvk_index().get((group, version, kind))


def kind_schema(rt: ResourceType) -> dict | None:
    name = definition_name(rt.group, rt.version, rt.kind)
    return definitions().get(name) if name else None


def schema_for(group: str, version: str, kind: str) -> dict | None:
    name = definition_name(group, version, kind)
    return definitions().get(name) if name else None


def _types(node: dict) -> set[str]:
    t = node.get("type")
    if t is None:
        return set()
    return {t} if isinstance(t, str) else set(t)


def field(node: dict | None, key: str) -> dict | None:
    """The (unresolved) schema node of a struct field or map value; None when unknown."""
    node = resolve(node)
    if node is None:
        return None
    props = node.get("properties")
    if props is not None and key in props:
        return props[key]
    ap = node.get("additionalProperties")
    if isinstance(ap, dict):
        return ap
    return None


def items(node: dict | None) -> dict | None:
    node = resolve(node)
    if node is None:
        return None
    it = node.get("items")
    return it if isinstance(it, dict) else None


def patch_meta(node: dict | None) -> tuple[list[str], str]:
    """(patch strategies, merge key) declared on a field node (x-kubernetes-patch-*)."""
    if node is None:
        return [], ""
    strategy = node.get("x-kubernetes-patch-strategy") or ""
    return [s for s in strategy.split(",") if s], node.get("x-kubernetes-patch-merge-key") or ""


def is_open(node: dict | None) -> bool:
    """True when the schema allows arbitrary content below this node (unknown or free-form)."""
    node = resolve(node)
    if node is None:
        return True
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return True
    if "properties" in node or "additionalProperties" in node or "items" in node:
        return False
    if "oneOf" in node or "anyOf" in node:
        return False  # int-or-string, quantity: scalars
    types = _types(node)
    # A bare "object" without properties (RawExtension, FieldsV1) holds anything.
    return not types or types <= {"object", "null"}


def _walk_unknown(value: Any, node: dict | None, path: str, out: list[str]) -> None:
    node = resolve(node)
    if node is None or is_open(node):
        return
    if isinstance(value, dict):
        props = node.get("properties")
        ap = node.get("additionalProperties")
        if props is None and not isinstance(ap, dict):
            return
        for k, v in value.items():
            sub_path = f"{path}.{k}" if path else k
            if props is not None and k in props:
                _walk_unknown(v, props[k], sub_path, out)
            elif isinstance(ap, dict):
                _walk_unknown(v, ap, sub_path, out)
            elif props is not None:
                out.append(sub_path)
    elif isinstance(value, list):
        it = node.get("items")
        if isinstance(it, dict):
            for i, v in enumerate(value):
                _walk_unknown(v, it, f"{path}[{i}]", out)


def unknown_fields(obj: dict, rt: ResourceType) -> list[str]:
    """Field paths of obj the kind's schema does not know, as kube-apiserver's strict decoder names them.

    e.g. ["spec.foo", "spec.ports[0].bogus"]; apiVersion/kind/metadata are known.
    """
    node = kind_schema(rt)
    if node is None:
        return []
    out: list[str] = []
    _walk_unknown(obj, node, "", out)
    return out


def unknown_fields_of(obj: dict, group: str, version: str, kind: str) -> list[str]:
    """unknown_fields for a kind given by group/version/kind (e.g. autoscaling/v1 Scale)."""
    node = schema_for(group, version, kind)
    if node is None:
        return []
    out: list[str] = []
    _walk_unknown(obj, node, "", out)
    return out


def _prune(value: Any, node: dict | None) -> None:
    node = resolve(node)
    if node is None or is_open(node):
        return
    if isinstance(value, dict):
        props = node.get("properties")
        ap = node.get("additionalProperties")
        if props is None and not isinstance(ap, dict):
            return
        for k in list(value):
            if props is not None and k in props:
                _prune(value[k], props[k])
            elif isinstance(ap, dict):
                _prune(value[k], ap)
            elif props is not None:
                del value[k]
    elif isinstance(value, list):
        it = node.get("items")
        if isinstance(it, dict):
            for v in value:
                _prune(v, it)


def prune_unknown(obj: dict, rt: ResourceType) -> dict:
    """Drop, in place, the fields the kind's schema does not know (what decoding into
    the Go types does under fieldValidation=Ignore/Warn); returns obj."""
    _prune(obj, kind_schema(rt))
    return obj


def kinds_with_schema(rts: Iterator[ResourceType] | tuple[ResourceType, ...]) -> list[ResourceType]:
    return [rt for rt in rts if kind_schema(rt) is not None]


def strict_decoding_message(unknown: list[str]) -> str:
    """runtime.NewStrictDecodingError's text: strict decoding error: unknown field "a", unknown field "b"."""
    return "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown)


def strict_create_error(rt: ResourceType, unknown: list[str]):
    """What kube-apiserver answers a create/update body with unknown fields under fieldValidation=Strict.

    400 BadRequest: `ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: ...`
    """
    from kubesvc.objects.errors import bad_request
    return bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                       + strict_decoding_message(unknown))


def strict_patch_error(patch_text: str, unknown: list[str]):
    """What kube-apiserver answers a (non-apply) PATCH that leaves unknown fields under Strict.

    422 Invalid from errors.NewInvalid(GroupKind{}, "", patch: Invalid value: "<patch>": strict decoding error: ...);
    patch_text is the patch as Go's %+v prints the decoded map (SMP) or the patched JSON (merge/JSON patch).
    """
    from kubesvc.objects.errors import FieldError, invalid_object
    err = FieldError("Invalid", "patch", patch_text, strict_decoding_message(unknown))
    return invalid_object("", "", [err])


# ---------------------------------------------------------------------------
# type errors, as decoding into the Go types reports them


def _go_name(defname: str) -> str:
    parts = defname.split(".")
    return f"{parts[-2]}.{parts[-1]}" if len(parts) >= 2 else defname


def _scalar_go_type(node: dict) -> str:
    t = node.get("type")
    t = [x for x in t if x != "null"][0] if isinstance(t, list) and len(t) > 1 else (t[0] if isinstance(t, list) else t)
    fmt = node.get("format")
    if t == "integer":
        return "int32" if fmt == "int32" else "int64"
    if t == "number":
        return "float64"
    if t == "boolean":
        return "bool"
    if t == "string":
        return "[]uint8" if fmt == "byte" else "string"
    return "interface {}"


def _go_type(field_node: dict | None) -> str:
    if field_node is None:
        return "interface {}"
    name = ref_name(field_node)
    if name is not None:
        return _go_name(name)
    node = field_node
    if "items" in node and isinstance(node["items"], dict):
        return "[]" + _go_type(node["items"])
    ap = node.get("additionalProperties")
    if isinstance(ap, dict):
        return "map[string]" + _go_type(ap)
    return _scalar_go_type(node)


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (int, float)):
        return "number"
    return "null"


def _accepts(node: dict, v: Any) -> tuple[bool, str]:
    """Whether a scalar schema node takes v; second item is Go's description of a refused number."""
    if v is None:
        return True, ""
    if "oneOf" in node or "anyOf" in node:  # int-or-string, quantity
        return isinstance(v, (str, int, float)) and not isinstance(v, bool), ""
    t = node.get("type")
    types = {t} if isinstance(t, str) else set(t or ())
    types.discard("null")
    if not types or "object" in types and "properties" not in node and "additionalProperties" not in node:
        return True, ""
    if "integer" in types:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False, ""
        if isinstance(v, float) and not v.is_integer():
            return False, f"number {v:g}"
        return True, ""
    if "number" in types:
        return isinstance(v, (int, float)) and not isinstance(v, bool), ""
    if "boolean" in types:
        return isinstance(v, bool), ""
    if "string" in types:
        return isinstance(v, str), ""
    return True, ""


def _type_walk(v: Any, field_node: dict | None, struct: str, path: str) -> str | None:
    node = resolve(field_node)
    if node is None or v is None or node.get("x-kubernetes-preserve-unknown-fields"):
        return None
    props = node.get("properties")
    ap = node.get("additionalProperties")
    items = node.get("items")
    if props is not None or isinstance(ap, dict):
        if not isinstance(v, dict):
            return (f"json: cannot unmarshal {_json_kind(v)} into Go struct field {struct}.{path} "
                    f"of type {_go_type(field_node)}")
        my_struct = _go_name(ref_name(field_node) or "").split(".")[-1] if ref_name(field_node) else struct
        for k, x in v.items():
            if props is not None and k in props:
                err = _type_walk(x, props[k], my_struct, f"{path}.{k}" if path else k)
            elif isinstance(ap, dict):
                err = _type_walk(x, ap, struct if props is None else my_struct, path)
            else:
                err = None
            if err:
                return err
        return None
    if isinstance(items, dict):
        if not isinstance(v, list):
            return (f"json: cannot unmarshal {_json_kind(v)} into Go struct field {struct}.{path} "
                    f"of type {_go_type(field_node)}")
        for x in v:
            err = _type_walk(x, items, struct, path)
            if err:
                return err
        return None
    ok, shown = _accepts(node, v)
    if ok:
        return None
    return (f"json: cannot unmarshal {shown or _json_kind(v)} into Go struct field {struct}.{path} "
            f"of type {_go_type(field_node) if ref_name(field_node) else _scalar_go_type(node)}")


def type_error(obj: dict, rt: ResourceType) -> str | None:
    """The first value of obj whose JSON type the kind's Go type refuses, worded as encoding/json words it.

    e.g. `json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32`;
    None when every value fits. kube-apiserver reports it (before unknown fields) as
    `Deployment in version "v1" cannot be handled as a Deployment: <this>` (see decode_error).
    """
    name = definition_name(rt.group, rt.version, rt.kind)
    if name is None:
        return None
    return _type_walk(obj, {"$ref": "#/$defs/" + name}, rt.kind, "")


def decode_error(rt: ResourceType, message: str):
    """400 BadRequest for a body that does not decode into the kind (transformDecodeError)."""
    from kubesvc.objects.errors import bad_request
    return bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {message}')
