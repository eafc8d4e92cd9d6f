"""Field ownership (metadata.managedFields) as kube-apiserver's field manager keeps it.

Owns the FieldsV1 format (structured-merge-diff's field sets), the per-kind
"shape" of an object that decides how paths are named (struct fields and map
keys ``f:``, associative-list items ``k:{...}``, set items ``v:...``; atomic lists
and maps are leaves), comparing two objects into added/modified/removed paths,
and :func:`update_managed_fields`, which the API server calls on every create,
update and non-apply patch. Server-side apply (:mod:`kubesvc.objects.apply`)
builds on the same sets.

A field set is a Python ``set`` of paths; a path is a tuple of path-element
strings exactly as FieldsV1 spells them, e.g. ``("f:spec", "f:ports",
'k:{"port":80,"protocol":"TCP"}', "f:targetPort")``.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from kubesvc.objects import schema as sch
from kubesvc.objects.registry import ResourceType, by_api_version

Path = tuple[str, ...]
FieldSet = set[Path]

# Key fields Kubernetes defaults when an associative-list item omits them
# (ServicePort.protocol and ContainerPort.protocol are +default="TCP").
_KEY_DEFAULTS = {"protocol": "TCP"}

# Paths the field manager never records (stripMetaManager).
STRIPPED: frozenset[Path] = frozenset({
    ("f:apiVersion",), ("f:kind",), ("f:metadata",), ("f:metadata", "f:name"), ("f:metadata", "f:namespace"),
    ("f:metadata", "f:creationTimestamp"), ("f:metadata", "f:selfLink"), ("f:metadata", "f:uid"),
    ("f:metadata", "f:clusterName"), ("f:metadata", "f:generation"), ("f:metadata", "f:managedFields"),
    ("f:metadata", "f:resourceVersion"),
})


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _compact(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


# ---------------------------------------------------------------------------
# The shape of a schema node, as structured-merge-diff sees built-in types


@dataclass(frozen=True)
class Shape:
    """How one node of an object is walked: kind is struct, map, list-map, list-set, atomic or scalar."""

    kind: str
    node: dict | None = None
    keys: tuple[str, ...] = ()


_SHAPES: dict[int, Shape] = {}


def shape_of(field_node: dict | None, value: Any = None) -> Shape:
    """The shape of a field's schema node (cached: schema nodes live as long as the process)."""
    if field_node is not None:
        cached = _SHAPES.get(id(field_node))
        if cached is not None:
            return cached
        shape = _shape_of(field_node, value)
        if shape.node is not None:
            _SHAPES[id(field_node)] = shape
        return shape
    return _shape_of(None, value)


def _shape_of(field_node: dict | None, value: Any = None) -> Shape:
    node = sch.resolve(field_node)
    if node is None:
        # Unknown: follow the value (maps granular, lists atomic), like unstructured.
        if isinstance(value, dict):
            return Shape("map", None)
        return Shape("atomic" if isinstance(value, list) else "scalar")
    if field_node is not None and field_node is not node:
        # Extensions may sit on the referencing property rather than the definition.
        merged = dict(node)
        for k, v in field_node.items():
            if k.startswith("x-kubernetes-"):
                merged[k] = v
        node_ext = merged
    else:
        node_ext = node
    types = node_ext.get("type")
    types = {types} if isinstance(types, str) else set(types or ())
    if "items" in node_ext or "array" in types:
        list_type = node_ext.get("x-kubernetes-list-type")
        strategies, merge_key = sch.patch_meta(node_ext)
        item = sch.resolve(node_ext.get("items"))
        item_is_struct = item is not None and ("properties" in item or "object" in set(
            [item.get("type")] if isinstance(item.get("type"), str) else item.get("type") or ()))
        if list_type == "map":
            return Shape("list-map", node_ext, tuple(node_ext.get("x-kubernetes-list-map-keys") or
                                                     ([merge_key] if merge_key else [])))
        if list_type == "set":
            return Shape("list-set", node_ext)
        if list_type == "atomic":
            return Shape("atomic", node_ext)
        if "merge" in strategies:
            if item_is_struct and merge_key:
                return Shape("list-map", node_ext, (merge_key,))
            if not item_is_struct:
                return Shape("list-set", node_ext)
        return Shape("atomic", node_ext)
    if node_ext.get("x-kubernetes-map-type") == "atomic":
        return Shape("atomic", node_ext)
    if "properties" in node_ext:
        return Shape("struct", node_ext)
    if isinstance(node_ext.get("additionalProperties"), dict):
        return Shape("map", node_ext)
    if sch.is_open(node_ext):
        # free-form objects (FieldsV1, RawExtension): atomic
        return Shape("atomic", node_ext)
    return Shape("scalar", node_ext)


def child_node(shape: Shape, key: str) -> dict | None:
    return sch.field(shape.node, key) if shape.node is not None else None


def item_node(shape: Shape) -> dict | None:
    return sch.items(shape.node) if shape.node is not None else None


def item_element(shape: Shape, item: Any) -> str | None:
    """The path element of a list item ("k:{...}" or "v:..."), None when the item has no key."""
    if shape.kind == "list-set":
        return "v:" + _compact(item)
    if not isinstance(item, dict):
        return None
    key = {}
    for k in shape.keys:
        if k in item:
            key[k] = item[k]
        elif k in _KEY_DEFAULTS:
            key[k] = _KEY_DEFAULTS[k]
        else:
            return None
    return "k:" + _compact(key)


def root_shape(rt: ResourceType | None) -> Shape:
    node = sch.kind_schema(rt) if rt is not None else None
    return Shape("struct", node) if node is not None else Shape("map", None)


# ---------------------------------------------------------------------------
# FieldsV1 <-> sets


def decode_fields(fields: dict | None) -> FieldSet:
    out: FieldSet = set()

    def walk(node: dict, prefix: Path) -> None:
        for k, v in node.items():
            if k == ".":
                continue
            p = prefix + (k,)
            if not isinstance(v, dict) or not v or "." in v:
                out.add(p)
            if isinstance(v, dict):
                walk(v, p)
    if isinstance(fields, dict):
        walk(fields, ())
    return out


def _element_sort_key(e: str) -> tuple:
    order = {"f": 0, "k": 1, "v": 2, "i": 3}
    return (order.get(e[:1], 4), e)


def encode_fields(s: Iterable[Path]) -> dict:
    root: dict = {}
    members: set[Path] = set(s)
    for p in members:
        node = root
        for e in p:
            node = node.setdefault(e, {})
    def finish(node: dict, prefix: Path) -> dict:
        out: dict = {}
        children = sorted(node, key=_element_sort_key)
        if prefix in members and children:
            out["."] = {}
        for c in children:
            out[c] = finish(node[c], prefix + (c,))
        return out
    return finish(root, ())


def path_string(p: Path) -> str:
    """A path as structured-merge-diff prints it in conflicts: .spec.ports[port=80,protocol="TCP"]."""
    out = []
    for e in p:
        kind, rest = e[:1], e[2:]
        if kind == "f":
            out.append("." + rest)
        elif kind == "k":
            try:
                key = json.loads(rest)
                out.append("[" + ",".join(f"{k}={_compact(key[k])}" for k in sorted(key)) + "]")
            except ValueError:
                out.append("[" + rest + "]")
        elif kind == "v":
            out.append("[=" + rest + "]")
        elif kind == "i":
            out.append("[" + rest + "]")
        else:
            out.append("." + e)
    return "".join(out)


# ---------------------------------------------------------------------------
# Walking objects


def to_field_set(obj: Any, shape: Shape) -> FieldSet:
    """The fields an applied configuration sets (structured-merge-diff ToFieldSet)."""
    out: FieldSet = set()
    _to_set(obj, shape, (), out)
    return out - STRIPPED


def _to_set(v: Any, shape: Shape, path: Path, out: FieldSet) -> None:
    if shape.kind in ("scalar", "atomic"):
        out.add(path)
        return
    if shape.kind in ("struct", "map"):
        if not isinstance(v, dict):
            out.add(path)
            return
        for k, x in v.items():
            p = path + ("f:" + k,)
            cnode = child_node(shape, k)
            cshape = shape_of(cnode, x)
            _to_set(x, cshape, p, out)
            known = shape.kind == "struct" and shape.node is not None and k in (shape.node.get("properties") or {})
            if x is None or (isinstance(x, dict) and not x) or not known:
                out.add(p)
        return
    # lists
    if not isinstance(v, list):
        out.add(path)
        return
    inode = item_node(shape)
    for item in v:
        e = item_element(shape, item)
        if e is None:
            continue
        p = path + (e,)
        if shape.kind == "list-map":
            _to_set(item, shape_of(inode, item), p, out)
        out.add(p)


@dataclass
class Comparison:
    added: FieldSet = field(default_factory=set)
    modified: FieldSet = field(default_factory=set)
    removed: FieldSet = field(default_factory=set)

    def changed(self) -> FieldSet:
        return self.added | self.modified


_MISSING = object()


def compare(old: Any, new: Any, shape: Shape) -> Comparison:
    """Paths added, modified and removed going from old to new (structured-merge-diff Compare)."""
    c = Comparison()
    _cmp(old, new, shape, (), c, is_field=False)
    for s in (c.added, c.modified, c.removed):
        s -= STRIPPED
    return c


def _empty(v: Any) -> bool:
    return v is _MISSING or v is None or (isinstance(v, (dict, list)) and not v)


def _leaf(old: Any, new: Any, path: Path, c: Comparison) -> None:
    if old is _MISSING and new is _MISSING:
        return
    if old is _MISSING:
        c.added.add(path)
    elif new is _MISSING:
        c.removed.add(path)
    elif not _equal(old, new):
        c.modified.add(path)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _cmp(old: Any, new: Any, shape: Shape, path: Path, c: Comparison, is_field: bool,
         required: bool = False) -> None:
    if old is new or (type(old) is type(new) and old == new):
        return  # identical subtrees change nothing (most of an object, on most updates)
    kind = shape.kind
    if kind in ("struct", "map") and not (isinstance(old, dict) or old is _MISSING) \
            or kind in ("struct", "map") and not (isinstance(new, dict) or new is _MISSING):
        kind = "scalar"
    if kind.startswith("list") and not (isinstance(old, list) or old is _MISSING) \
            or kind.startswith("list") and not (isinstance(new, list) or new is _MISSING):
        kind = "scalar"
    if kind in ("scalar", "atomic") or (kind != "scalar" and _empty(old) and _empty(new)):
        _leaf(old, new, path, c)
        return
    if kind in ("struct", "map"):
        o = old if isinstance(old, dict) else {}
        n = new if isinstance(new, dict) else {}
        props = (shape.node.get("properties") or {}) if kind == "struct" and shape.node is not None else {}
        req = set(shape.node.get("required") or ()) if props else set()
        for k in list(o) + [k for k in n if k not in o]:
            # null is no value: Go decodes it to the zero value and omits it again
            ov, nv = o.get(k, _MISSING), n.get(k, _MISSING)
            if ov is None:
                ov = _MISSING
            if nv is None:
                nv = _MISSING
            if ov is _MISSING and nv is _MISSING:
                continue
            cnode = child_node(shape, k)
            x = nv if nv is not _MISSING else ov
            _cmp(ov, nv, shape_of(cnode, x), path + ("f:" + k,), c, is_field=k in props, required=k in req)
    else:
        inode = item_node(shape)
        o_items = _keyed(old if isinstance(old, list) else [], shape)
        n_items = _keyed(new if isinstance(new, list) else [], shape)
        for e in list(o_items) + [e for e in n_items if e not in o_items]:
            ov, nv = o_items.get(e, _MISSING), n_items.get(e, _MISSING)
            x = nv if nv is not _MISSING else ov
            if kind == "list-set":
                _leaf(ov, nv, path + (e,), c)
            else:
                _cmp(ov, nv, shape_of(inode, x), path + (e,), c, is_field=False)
    # A container that appears or disappears is itself added/removed; struct
    # fields are implied by their children (Go's value-type structs are always
    # there), so only maps, lists and list items are recorded.
    if is_field and shape.kind == "struct":
        return
    # Required fields (no omitempty in Go) are always there, if only as null, so
    # a required list or map appearing is not an addition of the list itself.
    if required:
        return
    if old is _MISSING and new is not _MISSING:
        c.added.add(path)
    elif new is _MISSING and old is not _MISSING:
        c.removed.add(path)


def _keyed(items: list, shape: Shape) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for it in items:
        e = item_element(shape, it)
        if e is not None and e not in out:
            out[e] = it
    return out


# ---------------------------------------------------------------------------
# managedFields entries


@dataclass
class Entry:
    """One metadata.managedFields entry, with its field set decoded."""

    manager: str
    operation: str
    api_version: str
    fields: FieldSet
    time: str | None = None
    subresource: str = ""

    def ident(self) -> tuple:
        # appliers are one manager whatever the version; updaters are per version (BuildManagerIdentifier)
        if self.operation == "Apply":
            return (self.manager, "Apply", "", self.subresource)
        return (self.manager, self.operation, self.api_version, self.subresource)

    def describe(self) -> str:
        """The manager as kube-apiserver names it in conflict messages."""
        s = json.dumps(self.manager)
        if self.subresource:
            s += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            s += f" using {self.api_version}"
        return s

    def encode(self) -> dict:
        e: dict[str, Any] = {"manager": self.manager, "operation": self.operation,
                             "apiVersion": self.api_version}
        if self.time:
            e["time"] = self.time
        e["fieldsType"] = "FieldsV1"
        e["fieldsV1"] = encode_fields(self.fields)
        if self.subresource:
            e["subresource"] = self.subresource
        return e


def decode_entries(entries: Any) -> list[Entry] | None:
    """Entries of a managedFields list; None when it is not a valid list (then the live ones are used)."""
    if not isinstance(entries, list):
        return None
    out = []
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("manager", ""), str):
            return None
        op = e.get("operation", "")
        if op not in ("Apply", "Update"):
            return None
        out.append(Entry(e.get("manager", ""), op, e.get("apiVersion", ""), decode_fields(e.get("fieldsV1")),
                         e.get("time"), e.get("subresource", "") or ""))
    return out


def encode_entries(entries: list[Entry]) -> list[dict]:
    def key(e: Entry) -> tuple:
        return (e.operation, e.time or "", e.manager, e.api_version, e.subresource)
    return [e.encode() for e in sorted((e for e in entries if e.fields), key=key)]


def is_reset(entries: Any) -> bool:
    """managedFields: [] or [{}] in a request clears ownership (isResetManagedFields)."""
    if isinstance(entries, list):
        return len(entries) == 0 or (len(entries) == 1 and entries[0] == {})
    return False


def rt_of(obj: dict) -> ResourceType | None:
    av, kind = obj.get("apiVersion"), obj.get("kind")
    if isinstance(av, str) and isinstance(kind, str):
        return by_api_version(av, kind)
    return None


def scope(obj: Any, rt: ResourceType | None, subresource: str) -> Any:
    """The part of an object a request may own: status only via /status; the rest otherwise."""
    if not isinstance(obj, dict):
        return obj
    has_status = rt is not None and "status" in rt.subresources
    if subresource == "status":
        return {"status": obj["status"]} if "status" in obj else {}
    if has_status and subresource in ("", "scale"):
        return {k: v for k, v in obj.items() if k != "status"}
    return obj


def current_entries(old: dict | None, new: dict) -> list[Entry]:
    """The ownership an update starts from: the request's managedFields if it set any, else the live ones."""
    new_mf = (new.get("metadata") or {}).get("managedFields")
    if is_reset(new_mf):
        return []
    decoded = decode_entries(new_mf) if new_mf is not None else None
    if decoded:
        return decoded
    old_mf = ((old or {}).get("metadata") or {}).get("managedFields")
    return decode_entries(old_mf) or []


def update_managed_fields(old: dict | None, new: dict, manager: str, operation: str = "Update",
                          subresource: str = "") -> None:
    """Record in new.metadata.managedFields what this write changed, as kube-apiserver's field manager does.

    Call it on every create (old=None), update and non-apply patch, after
    defaulting and before allocation: the manager owns what it added or changed,
    other managers lose those fields, everyone loses removed fields. A request
    that sets managedFields itself (kubectl's client-side to server-side apply
    upgrade) is trusted; managedFields: [] clears them.
    """
    rt = rt_of(new) or (rt_of(old) if old else None)
    api_version = new.get("apiVersion") or (rt.api_version if rt else "v1")
    entries = current_entries(old, new)
    sub = subresource if subresource in ("status", "scale") else ""
    shape = root_shape(rt)
    c = compare(scope(old if old is not None else {}, rt, sub), scope(new, rt, sub), shape)
    changed = c.changed()
    for e in entries:
        e.fields = (e.fields - c.removed)
        if not (e.manager == manager and e.operation == operation and e.subresource == sub
                and e.api_version == api_version):
            e.fields -= changed
    if changed:
        mine = next((e for e in entries if e.manager == manager and e.operation == operation
                     and e.subresource == sub and e.api_version == api_version), None)
        if mine is None:
            mine = Entry(manager, operation, api_version, set(), subresource=sub)
            entries.append(mine)
        mine.fields |= changed
        mine.time = now()
    meta = new.setdefault("metadata", {})
    encoded = encode_entries(entries)
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)


def owned_paths(entries: list[Entry]) -> Iterator[tuple[Entry, Path]]:
    for e in entries:
        for p in e.fields:
            yield e, p
