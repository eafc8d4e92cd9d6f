"""PATCH bodies: dispatch to objects.patch (strategic merge, merge, JSON patch,
server-side apply), with a plain fallback while that module is being written.
"""

from __future__ import annotations

import copy

import orjson
import yaml

from kubesvc.objects.errors import StatusError, bad_request
from kubesvc.objects.registry import ResourceType

try:  # written in parallel by another engineer; the fallbacks below keep PATCH usable until then
    from kubesvc.objects import patch as _patch
except ImportError:  # pragma: no cover - depends on build state
    _patch = None

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"


def _loads(body: bytes):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise bad_request(f"error decoding patch: {err}")


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request('the server rejected our request due to an error in our request')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc, ops):
    """RFC 6902 JSON patch."""
    doc = copy.deepcopy(doc)
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    for op in ops:
        kind, path = op.get("op"), _pointer(op.get("path", ""))

        def parent(p):
            cur = doc
            for seg in p[:-1]:
                cur = cur[int(seg)] if isinstance(cur, list) else cur[seg]
            return cur

        try:
            if kind in ("add", "replace"):
                par, key = parent(path), path[-1]
                if isinstance(par, list):
                    idx = len(par) if key == "-" else int(key)
                    if kind == "add":
                        par.insert(idx, copy.deepcopy(op.get("value")))
                    else:
                        par[idx] = copy.deepcopy(op.get("value"))
                else:
                    if kind == "replace" and key not in par:
                        raise KeyError(key)
                    par[key] = copy.deepcopy(op.get("value"))
            elif kind == "remove":
                par, key = parent(path), path[-1]
                if isinstance(par, list):
                    del par[int(key)]
                else:
                    del par[key]
            elif kind == "test":
                cur = doc
                for seg in path:
                    cur = cur[int(seg)] if isinstance(cur, list) else cur[seg]
                if cur != op.get("value"):
                    raise bad_request("the server rejected our request due to an error in our request")
            elif kind in ("move", "copy"):
                src = _pointer(op.get("from", ""))
                cur = doc
                for seg in src:
                    cur = cur[int(seg)] if isinstance(cur, list) else cur[seg]
                val = copy.deepcopy(cur)
                if kind == "move":
                    sp = parent(src)
                    if isinstance(sp, list):
                        del sp[int(src[-1])]
                    else:
                        del sp[src[-1]]
                par, key = parent(path), path[-1]
                if isinstance(par, list):
                    par.insert(len(par) if key == "-" else int(key), val)
                else:
                    par[key] = val
            else:
                raise bad_request(f"Unexpected kind: {kind}")
        except (KeyError, IndexError, ValueError, TypeError):
            raise StatusError(422, "Invalid", "the server rejected our request due to an error in our request")
    return doc


def apply_patch(patch_type: str, original: dict, body: bytes, rt: ResourceType) -> dict:
    if _patch is not None and hasattr(_patch, "apply_patch"):
        return _patch.apply_patch(patch_type, original, body, rt)
    if patch_type == JSON_PATCH:
        return json_patch(original, _loads(body))
    # Strategic merge falls back to a merge patch (lists replaced, no directives).
    p = _loads(body)
    if not isinstance(p, dict):
        raise bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
    return merge_patch(original, p)


def parse_apply(body: bytes) -> dict:
    if _patch is not None and hasattr(_patch, "parse_apply_body"):
        return _patch.parse_apply_body(body)
    try:
        obj = yaml.safe_load(body)
    except yaml.YAMLError as err:
        raise bad_request(f"error decoding YAML: {err}")
    if not isinstance(obj, dict):
        raise bad_request("error decoding YAML: not an object")
    return obj


def strict_patch_error(patch_type: str, body: bytes, patched: dict, unknown: list[str]) -> StatusError:
    if _patch is not None and hasattr(_patch, "strict_patch_error"):
        return _patch.strict_patch_error(patch_type, body, patched, unknown)
    return StatusError(422, "Invalid", "strict decoding error: "
                       + ", ".join(f'unknown field "{u}"' for u in unknown))


def update_managed_fields(old: dict | None, new: dict, manager: str, operation: str, subresource: str) -> None:
    """Record the write in managedFields (objects.managedfields when built, a coarse fallback otherwise)."""
    if _patch is not None and hasattr(_patch, "update_managed_fields"):
        _patch.update_managed_fields(old, new, manager, operation, subresource)
        return
    from kubesvc.objects.meta import record_update
    record_update(new, manager, operation, new.get("apiVersion", "v1"), subresource)


def server_side_apply(live: dict | None, applied: dict, manager: str, force: bool, rt: ResourceType,
                      subresource: str = "") -> dict:
    if _patch is not None and hasattr(_patch, "server_side_apply"):
        return _patch.server_side_apply(live, applied, manager, force, rt, subresource)
    out = copy.deepcopy(applied) if live is None else merge_patch(live, applied)
    from kubesvc.objects.meta import field_set, now
    meta = out.setdefault("metadata", {})
    content = {k: v for k, v in applied.items() if k not in ("apiVersion", "kind", "metadata")}
    am = {k: v for k, v in (applied.get("metadata") or {}).items() if k in ("labels", "annotations")}
    fields = field_set(content)
    if am:
        fields = {"f:metadata": field_set(am), **fields}
    entries = [e for e in meta.get("managedFields") or []
               if not (e.get("manager") == manager and e.get("operation") == "Apply")]
    entries.append({"manager": manager, "operation": "Apply", "apiVersion": rt.api_version, "time": now(),
                    "fieldsType": "FieldsV1", "fieldsV1": fields})
    meta["managedFields"] = entries
    return out
