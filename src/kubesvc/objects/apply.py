"""Server-side apply (PATCH with application/apply-patch+yaml), as kube-apiserver does it.

Owns merging an applied configuration into the live object by the kind's schema
(structs and maps merge, associative lists merge by key, atomic values are
replaced), field ownership for the applier (an ``Apply`` entry in
managedFields holding exactly the fields the configuration sets), conflicts with
other managers (409 worded as kube-apiserver words them, unless force), and
removal of fields this manager applied before and no longer applies when no one
else owns them.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from kubesvc.objects import managedfields as mf
from kubesvc.objects.errors import StatusError, bad_request
from kubesvc.objects.registry import ResourceType

BEFORE_FIRST_APPLY = "before-first-apply"


def parse_apply_body(body: bytes) -> dict:
    """The applied configuration of an apply request (YAML or JSON)."""
    try:
        obj = yaml.safe_load(body)
    except yaml.YAMLError as err:
        raise bad_request(f"error decoding YAML: {err}") from None
    if not isinstance(obj, dict):
        raise bad_request("error decoding YAML: the applied configuration is not an object")
    return obj


# ---------------------------------------------------------------------------
# merge (structured-merge-diff typed merge: rhs wins)


def merge(live: Any, applied: Any, shape: mf.Shape) -> Any:
    kind = shape.kind
    if applied is None:
        return None
    if kind in ("struct", "map") and isinstance(live, dict) and isinstance(applied, dict):
        out = dict(live)
        for k, v in applied.items():
            cshape = mf.shape_of(mf.child_node(shape, k), v)
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = merge(out[k], v, cshape)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if kind in ("list-map", "list-set") and isinstance(live, list) and isinstance(applied, list):
        return _merge_list(live, applied, shape)
    return copy.deepcopy(applied)


def _merge_list(live: list, applied: list, shape: mf.Shape) -> list:
    inode = mf.item_node(shape)
    lkeys = [mf.item_element(shape, x) for x in live]
    rkeys = [mf.item_element(shape, x) for x in applied]
    rset = {k for k in rkeys if k is not None}
    lmap = {k: x for k, x in zip(lkeys, live) if k is not None}
    out: list = []
    used: set[str] = set()
    li = ri = 0
    # Walk both orders: items only in the live list keep their place, applied
    # items come in the applied order, merged with their live counterpart.
    while li < len(live) or ri < len(applied):
        if li < len(live):
            lk = lkeys[li]
            if lk is not None and lk in used:
                li += 1
                continue
            if lk is None or lk not in rset:
                out.append(live[li])
                li += 1
                continue
        if ri < len(applied):
            rk = rkeys[ri]
            item = applied[ri]
            ri += 1
            if rk is not None and rk in lmap:
                used.add(rk)
                if shape.kind == "list-map":
                    out.append(merge(lmap[rk], item, mf.shape_of(inode, item)))
                else:
                    out.append(copy.deepcopy(item))
            else:
                out.append(copy.deepcopy(item))
            continue
        li += 1
    return out


# ---------------------------------------------------------------------------
# prune: remove what this manager no longer applies


def _get(obj: Any, path: mf.Path, shape: mf.Shape) -> tuple[Any, Any, Any] | None:
    """(parent container, key-or-index, shape of the node) for a path, or None when absent."""
    parent, key, cur, cshape = None, None, obj, shape
    for e in path:
        if e.startswith("f:"):
            if not isinstance(cur, dict) or e[2:] not in cur:
                return None
            parent, key = cur, e[2:]
            cur = cur[key]
            cshape = mf.shape_of(mf.child_node(cshape, key), cur)
        elif e[:2] in ("k:", "v:"):
            if not isinstance(cur, list):
                return None
            idx = next((i for i, it in enumerate(cur) if mf.item_element(cshape, it) == e), None)
            if idx is None:
                return None
            inode = mf.item_node(cshape)
            parent, key = cur, idx
            cur = cur[idx]
            cshape = mf.shape_of(inode, cur)
        else:
            return None
    return parent, key, cshape


def _remove(obj: dict, path: mf.Path, shape: mf.Shape) -> None:
    found = _get(obj, path, shape)
    if found is None or found[0] is None:
        return
    parent, key, _ = found
    if isinstance(parent, dict):
        parent.pop(key, None)
    else:
        del parent[key]
    # Containers emptied by pruning disappear, as omitempty fields do in Go.
    for depth in range(len(path) - 1, 1, -1):
        up = _get(obj, path[:depth], shape)
        if up is None or up[0] is None:
            break
        p, k, _ = up
        val = p[k]
        if isinstance(val, (dict, list)) and not val:
            if isinstance(p, dict):
                p.pop(k, None)
            else:
                del p[k]
        else:
            break


def _prune(merged: dict, last: set, now_applied: set, others: set, shape: mf.Shape) -> dict:
    gone = last - now_applied
    if not gone:
        return merged
    # keep what another manager owns, or what has an owned descendant
    def owned_below(p: mf.Path) -> bool:
        n = len(p)
        return any(q[:n] == p for q in others | now_applied)
    removable = {p for p in gone if p not in others and not owned_below(p)}
    # remove the top-most paths only: removing an item takes its fields with it
    for p in sorted(removable, key=len):
        if any(p[:i] in removable for i in range(1, len(p))):
            continue
        _remove(merged, p, shape)
    return merged


# ---------------------------------------------------------------------------
# typed conversion of the applied configuration


def _undeclared(v: Any, shape: mf.Shape, path: mf.Path, out: list[str]) -> None:
    if shape.kind == "struct" and isinstance(v, dict):
        props = (shape.node or {}).get("properties") or {}
        for k, x in v.items():
            p = path + ("f:" + k,)
            if k not in props:
                out.append(f"{mf.path_string(p)}: field not declared in schema")
                continue
            _undeclared(x, mf.shape_of(props[k], x), p, out)
    elif shape.kind == "map" and isinstance(v, dict) and shape.node is not None:
        for k, x in v.items():
            _undeclared(x, mf.shape_of(mf.child_node(shape, k), x), path + ("f:" + k,), out)
    elif shape.kind == "list-map" and isinstance(v, list):
        inode = mf.item_node(shape)
        seen: set[str] = set()
        where = mf.path_string(path)
        for i, item in enumerate(v):
            e = mf.item_element(shape, item)
            if e is None:
                if isinstance(item, dict):
                    missing = next((k for k in shape.keys if k not in item), shape.keys[0] if shape.keys else "")
                    out.append(f'{where}: element {i}: associative list with keys has an element that omits '
                               f'key field "{missing}" (and doesn\'t have default value)')
                continue
            if e in seen:
                out.append(f"{where}: duplicate entries for key {mf.path_string((e,))}")
                continue
            seen.add(e)
            _undeclared(item, mf.shape_of(inode, item), path + (e,), out)


def _typed_patch_check(applied: dict, rt: ResourceType, shape: mf.Shape, namespace: str) -> None:
    errs: list[str] = []
    _undeclared(applied, shape, (), errs)
    if not errs:
        return
    detail = errs[0] if len(errs) == 1 else "errors:\n" + "\n".join("  " + e for e in errs)
    name = (applied.get("metadata") or {}).get("name") or ""
    gvk = f"{rt.group}/{rt.version}, Kind={rt.kind}"
    # kube-apiserver answers this with a 500 Status whose reason is empty
    raise StatusError(500, "", f"failed to create typed patch object ({namespace}/{name}; {gvk}): {detail}")


# ---------------------------------------------------------------------------
# conflicts


def _conflict_error(conflicts: list[tuple[mf.Entry, mf.Path]]) -> StatusError:
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {e.describe()}",
               "field": mf.path_string(p)} for e, p in conflicts]
    if len(conflicts) == 1:
        e, p = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {e.describe()}: {mf.path_string(p)}"
    else:
        by: dict[str, list[str]] = {}
        for e, p in conflicts:
            by.setdefault(e.describe(), []).append(mf.path_string(p))
        lines = []
        for m in sorted(by):
            lines.append(f"conflicts with {m}:")
            lines += [f"- {p}" for p in by[m]]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return StatusError(409, "Conflict", message, {"causes": causes})


# ---------------------------------------------------------------------------
# the entry point


def server_side_apply(live: dict | None, applied: dict, manager: str, force: bool, rt: ResourceType,
                      subresource: str = "") -> dict:
    """The object after applying a configuration for manager; creates when live is None.

    Raises StatusError: 400 for a bad configuration, 409 Conflict listing the
    fields other managers own with other values (unless force, which takes them).
    The result carries the updated managedFields; the server then defaults,
    validates and stores it like any update (without update_managed_fields).
    """
    if not isinstance(applied, dict):
        raise bad_request("error decoding YAML: the applied configuration is not an object")
    ameta = applied.get("metadata")
    if ameta is not None and not isinstance(ameta, dict):
        raise bad_request("error decoding YAML: metadata must be an object")
    if isinstance(ameta, dict) and ameta.get("managedFields") is not None:
        raise bad_request("metadata.managedFields must be nil")
    av = applied.get("apiVersion")
    if av is not None and av != rt.api_version and subresource != "scale":
        raise bad_request(f"Incorrect version specified in apply patch. Specified patch version: {av}, "
                          f"expected: {rt.api_version}")
    shape = mf.root_shape(rt)
    sub = subresource if subresource in ("status", "scale") else ""
    namespace = (ameta or {}).get("namespace") or ((live or {}).get("metadata") or {}).get("namespace") or ""
    if sub != "scale":
        _typed_patch_check(applied, rt, shape, namespace)
    base = copy.deepcopy(live) if live is not None else {}
    entries = mf.decode_entries((base.get("metadata") or {}).get("managedFields")) or []
    if live is not None and not entries:
        # An object no one applied before: what is there belongs to "before-first-apply".
        existing = mf.compare({}, mf.scope(base, rt, sub), shape).changed()
        if existing:
            entries.append(mf.Entry(BEFORE_FIRST_APPLY, "Update", rt.api_version, existing, mf.now()))

    applied_scoped = mf.scope(applied, rt, sub)
    new_set = mf.to_field_set(applied_scoped, shape)
    mine = next((e for e in entries if e.manager == manager and e.operation == "Apply"
                 and e.subresource == sub), None)
    last = set(mine.fields) if mine else set()

    merged = merge(base, applied_scoped, shape) if live is not None else copy.deepcopy(applied)
    others = set()
    for e in entries:
        if e is not mine:
            others |= e.fields
    merged = _prune(merged, last, new_set, others, shape)

    c = mf.compare(mf.scope(base, rt, sub), mf.scope(merged, rt, sub), shape)
    changed = c.changed()
    conflicts: list[tuple[mf.Entry, mf.Path]] = []
    for e in entries:
        if e is mine:
            continue
        for p in sorted(e.fields & changed):
            conflicts.append((e, p))
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for e in entries:
        if e is mine:
            continue
        e.fields = e.fields - changed - c.removed
    if mine is None:
        mine = mf.Entry(manager, "Apply", rt.api_version, set(), subresource=sub)
        entries.append(mine)
    mine.fields = new_set
    mine.api_version = rt.api_version
    noop = live is not None and mf.scope(merged, rt, sub) == mf.scope(base, rt, sub) and last == new_set
    if not noop:
        mine.time = mf.now()
    meta = merged.setdefault("metadata", {})
    encoded = mf.encode_entries(entries)
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)
    if live is None:
        merged.setdefault("apiVersion", rt.api_version)
        merged.setdefault("kind", rt.kind)
    return merged
