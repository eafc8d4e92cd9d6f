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


class _Compiled:
    """A schema node digested once for the hot walks (unknown fields, pruning, type errors)."""

    __slots__ = ("kind", "props", "ap", "items", "scalar", "go_type", "struct_name")

    def __init__(self, field_node: dict) -> None:
        node = resolve(field_node) or {}
        ap = node.get("additionalProperties")
        items = node.get("items")
        self.props: dict | None = node.get("properties")
        self.ap: dict | None = ap if isinstance(ap, dict) else None
        self.items: dict | None = items if isinstance(items, dict) else None
        name = ref_name(field_node)
        self.struct_name = name.rsplit(".", 1)[-1] if name else ""
        self.go_type = _go_type(field_node) if name or self.items is not None or self.ap is not None \
            else _scalar_go_type(node)
        self.scalar = ""
        if node.get("x-kubernetes-preserve-unknown-fields"):
            self.kind = "open"
        elif self.props is not None or self.ap is not None:
            self.kind = "object"
        elif self.items is not None:
            self.kind = "list"
        elif "oneOf" in node or "anyOf" in node:
            self.kind, self.scalar = "scalar", "intstr"
        else:
            types = _types(node) - {"null"}
            if not types or types <= {"object"}:
                self.kind = "open"
            else:
                self.kind = "scalar"
                for t, tag in (("integer", "int"), ("number", "number"), ("boolean", "bool"), ("string", "string")):
                    if t in types:
                        self.scalar = tag
                        break


_COMPILED: dict[int, tuple[dict, _Compiled]] = {}


def _compiled(field_node: dict) -> _Compiled:
    hit = _COMPILED.get(id(field_node))
    if hit is not None and hit[0] is field_node:
        return hit[1]
    c = _Compiled(field_node)
    _COMPILED[id(field_node)] = (field_node, c)  # the node is kept alive, so its id stays its own
    return c


@functools.cache
def _kind_ref(group: str, version: str, kind: str) -> dict | None:
    name = definition_name(group, version, kind)
    return {"$ref": "#/$defs/" + name} if name else None


def _walk_unknown(value: Any, c: _Compiled, path: str, out: list[str]) -> None:
    if c.kind == "object" and isinstance(value, dict):
        props, ap = c.props, c.ap
        for k, v in value.items():
            sub_path = f"{path}.{k}" if path else k
            if props is not None and k in props:
                _walk_unknown(v, _compiled(props[k]), sub_path, out)
            elif ap is not None:
                _walk_unknown(v, _compiled(ap), sub_path, out)
            else:
                out.append(sub_path)
    elif c.kind == "list" and isinstance(value, list):
        it = _compiled(c.items)
        for i, v in enumerate(value):
            _walk_unknown(v, it, f"{path}[{i}]", out)


def unknown_fields(obj: dict, rt: ResourceType) -> list[str]:
    """Field paths of obj the kind's schema does not know, as kube-apiserver's strict decoder names them.

    e.g. ["spec.foo", "spec.ports[0].bogus"]; apiVersion/kind/metadata are known.
    """
    return unknown_fields_of(obj, rt.group, rt.version, rt.kind)


def _has_unknown(value: Any, c: _Compiled) -> bool:
    """The walk of _walk_unknown without building paths: most objects have no unknown field."""
    if c.kind == "object" and isinstance(value, dict):
        props, ap = c.props, c.ap
        for k, v in value.items():
            if props is not None and k in props:
                if _has_unknown(v, _compiled(props[k])):
                    return True
            elif ap is not None:
                if _has_unknown(v, _compiled(ap)):
                    return True
            else:
                return True
    elif c.kind == "list" and isinstance(value, list):
        it = _compiled(c.items)
        return any(_has_unknown(v, it) for v in value)
    return False


def unknown_fields_of(obj: dict, group: str, version: str, kind: str) -> list[str]:
    """unknown_fields for a kind given by group/version/kind (e.g. autoscaling/v1 Scale)."""
    ref = _kind_ref(group, version, kind)
    if ref is None or not _has_unknown(obj, _compiled(ref)):
        return []
    out: list[str] = []
    _walk_unknown(obj, _compiled(ref), "", out)
    return out


def _prune(value: Any, c: _Compiled) -> None:
    if c.kind == "object" and isinstance(value, dict):
        props, ap = c.props, c.ap
        for k in list(value):
            if props is not None and k in props:
                _prune(value[k], _compiled(props[k]))
            elif ap is not None:
                _prune(value[k], _compiled(ap))
            else:
                del value[k]
    elif c.kind == "list" and isinstance(value, list):
        it = _compiled(c.items)
        for v in value:
            _prune(v, it)


def prune_unknown(obj: dict, rt: ResourceType) -> dict:
    """Drop, in place, the fields the kind's schema does not know (what decoding into
    the Go types does under fieldValidation=Ignore/Warn); returns obj."""
    ref = _kind_ref(rt.group, rt.version, rt.kind)
    if ref is not None:
        _prune(obj, _compiled(ref))
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


def json_kind(v: Any) -> str:
    """A decoded JSON value's kind as Go's encoding/json names it in its errors."""
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


def _accepts(c: _Compiled, v: Any) -> tuple[bool, str]:
    """Whether a scalar node takes v; second item is Go's description of a refused number."""
    tag = c.scalar
    if tag == "intstr":
        return isinstance(v, (str, int, float)) and not isinstance(v, bool), ""
    if tag == "int":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False, ""
        if isinstance(v, float) and not v.is_integer():
            return False, f"number {v:g}"
        return True, ""
    if tag == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool), ""
    if tag == "bool":
        return isinstance(v, bool), ""
    if tag == "string":
        return isinstance(v, str), ""
    return True, ""


def _type_ok(v: Any, c: _Compiled) -> bool:
    """The walk of _type_walk without building messages: most objects are well typed."""
    if v is None or c.kind == "open":
        return True
    if c.kind == "object":
        if not isinstance(v, dict):
            return False
        props, ap = c.props, c.ap
        for k, x in v.items():
            if props is not None and k in props:
                if not _type_ok(x, _compiled(props[k])):
                    return False
            elif ap is not None and not _type_ok(x, _compiled(ap)):
                return False
        return True
    if c.kind == "list":
        if not isinstance(v, list):
            return False
        it = _compiled(c.items)
        return all(_type_ok(x, it) for x in v)
    tag = c.scalar
    if tag == "string":
        return type(v) is str
    if tag == "int":
        return type(v) is int or (type(v) is float and v.is_integer())
    if tag == "bool":
        return type(v) is bool
    return _accepts(c, v)[0]


def _type_walk(v: Any, c: _Compiled, struct: str, path: str) -> str | None:
    if v is None or c.kind == "open":
        return None
    if c.kind == "object":
        if not isinstance(v, dict):
            return f"json: cannot unmarshal {json_kind(v)} into Go struct field {struct}.{path} of type {c.go_type}"
        props, ap = c.props, c.ap
        mine = c.struct_name or struct
        for k, x in v.items():
            if props is not None and k in props:
                err = _type_walk(x, _compiled(props[k]), mine, f"{path}.{k}" if path else k)
            elif ap is not None:
                err = _type_walk(x, _compiled(ap), struct if props is None else mine, path)
            else:
                err = None
            if err:
                return err
        return None
    if c.kind == "list":
        if not isinstance(v, list):
            return f"json: cannot unmarshal {json_kind(v)} into Go struct field {struct}.{path} of type {c.go_type}"
        it = _compiled(c.items)
        for x in v:
            err = _type_walk(x, it, struct, path)
            if err:
                return err
        return None
    ok, shown = _accepts(c, v)
    if ok:
        return None
    return (f"json: cannot unmarshal {shown or json_kind(v)} into Go struct field {struct}.{path} "
            f"of type {c.go_type}")


def type_error(obj: dict, rt: ResourceType) -> str | None:
    """The first value of obj whose JSON type the kind's Go type refuses, worded as encoding/json words it.

    e.g. `json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32`;
    None when every value fits. kube-apiserver reports it (before unknown fields) as
    `Deployment in version "v1" cannot be handled as a Deployment: <this>` (see decode_error).
    """
    ref = _kind_ref(rt.group, rt.version, rt.kind)
    if ref is None:
        return None
    root = _compiled(ref)
    if _type_ok(obj, root):
        return None
    return _type_walk(obj, root, rt.kind, "")


def decode_error(rt: ResourceType, message: str):
    """400 BadRequest for a body that does not decode into the kind (transformDecodeError)."""
    from kubesvc.objects.errors import bad_request
    return bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {message}')
