"""PATCH bodies applied to stored objects, as kube-apiserver applies them.

Owns the three patch types kubectl sends:

* ``application/strategic-merge-patch+json`` — Kubernetes' strategic merge patch:
  lists are merged by the merge key and strategy the kind's schema declares per
  field (containers by name, service ports by port, ...), with the directives
  ``$patch`` (replace/merge/delete), ``$setElementOrder/<field>``, ``$retainKeys``
  and ``$deleteFromPrimitiveList/<field>``;
* ``application/merge-patch+json`` — RFC 7386 JSON merge patch;
* ``application/json-patch+json`` — RFC 6902 JSON patch (add, remove, replace,
  move, copy, test).

Errors are :class:`StatusError` worded as kube-apiserver words them (the texts of
apimachinery's strategicpatch/mergepatch packages and of the JSON-patch library
kube-apiserver links). Server-side apply lives in :mod:`kubesvc.objects.apply`.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson

from kubesvc.objects import schema as sch
from kubesvc.objects.errors import StatusError, bad_request
from kubesvc.objects.registry import ResourceType

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_YAML = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE, STRATEGIC, APPLY_YAML)

MAX_JSON_PATCH_OPERATIONS = 10000

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList"
_SET_ORDER = "$setElementOrder"

# apimachinery/pkg/util/mergepatch errors
ERR_BAD_JSON_DOC = "invalid JSON document"
ERR_NO_LIST_OF_LISTS = "lists of lists are not supported"
ERR_BAD_PRIMITIVE_LIST = "invalid patch format of primitive list"
ERR_BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
ERR_BAD_SET_ORDER = "invalid patch format of setElementOrder list"
ERR_RETAIN_KEYS_MISMATCH = "patch content doesn't match retainKeys list"


class _SMPError(Exception):
    """A strategicpatch failure; .kind says how kube-apiserver reports it."""

    def __init__(self, message: str, kind: str = "internal"):
        super().__init__(message)
        self.message = message
        self.kind = kind  # "bad" (400), "invalid" (422 generic), "internal" (500, reason "")


# ---------------------------------------------------------------------------
# Go-compatible formatting (messages embed Go's %v of maps and slices)


def go_format(v: Any) -> str:
    """A JSON value as Go's fmt %v prints the decoded interface{} (map keys sorted)."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_format(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(go_format(x) for x in v) + "]"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    return str(v)


def go_json_error(body: bytes | str) -> str:
    """The message Go's encoding/json gives for a body that is not valid JSON."""
    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else body
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        if e.pos >= len(text) or not text.strip():
            return "unexpected end of JSON input"
        ch = text[e.pos]
        shown = "'" + (ch if ch != "'" else "\\'") + "'"
        msg = e.msg
        if msg.startswith("Expecting value"):
            ctx = "looking for beginning of value"
        elif msg.startswith("Expecting property name"):
            ctx = "looking for beginning of object key string"
        elif msg.startswith("Expecting ':'"):
            ctx = "after object key"
        elif msg.startswith("Expecting ','"):
            before = text[:e.pos].rstrip()
            ctx = "after array element" if _innermost_open(before) == "[" else "after object key:value pair"
        elif msg.startswith("Extra data"):
            ctx = "after top-level value"
        elif msg.startswith("Invalid control character"):
            ctx = "in string literal"
        else:
            ctx = "looking for beginning of value"
        return f"invalid character {shown} {ctx}"
    except ValueError as e:  # pragma: no cover - other decoding problems
        return str(e)
    return "invalid JSON"


def _innermost_open(text: str) -> str:
    depth: list[str] = []
    in_str = esc = False
    for c in text:
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth.append(c)
        elif c in "]}" and depth:
            depth.pop()
    return depth[-1] if depth else ""


def _loads(body: bytes | str) -> Any:
    """Decode a JSON body; on failure raise 400 with Go's wording."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_request(go_json_error(body)) from None


def _same(a: Any, b: Any) -> bool:
    """Equality of decoded JSON values as Go compares interface{}s (true != 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _kind_of(v: Any) -> str:
    if isinstance(v, dict):
        return "map"
    if isinstance(v, list):
        return "slice"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (int, float)):
        return "number"
    return "nil"


# ---------------------------------------------------------------------------
# Strategic merge patch (apimachinery strategicpatch, server side:
# MergeParallelList=true, IgnoreUnmatchedNulls=true)


def strategic_merge(original: dict, patch: dict, node: dict | None) -> dict:
    """Apply a strategic merge patch map to original (both are consumed) under schema node."""
    return _merge_map(original, patch, node)


def _no_merge_key(m: dict, key: str) -> _SMPError:
    return _SMPError(f"map: {go_format(m)} does not contain declared merge key: {key}")


def _split_strategy(strategies: list[str]) -> str:
    """The list/map strategy left once retainKeys is taken out (extractRetainKeysPatchStrategy)."""
    if len(strategies) > 2:
        raise _SMPError(f"unexpected patch strategy: {','.join(strategies)}")
    rest = [s for s in strategies if s != "retainKeys"]
    if len(strategies) == 2 and len(rest) != 1:
        raise _SMPError(f"unexpected patch strategy: {','.join(strategies)}")
    return rest[0] if rest else ""


def _merge_map(original: dict | None, patch: dict, node: dict | None) -> dict:
    if _DIRECTIVE in patch:
        d = patch[_DIRECTIVE]
        if d == "replace":
            del patch[_DIRECTIVE]
            return _strip_directives(patch)
        if d == "delete":
            return {}
        raise _SMPError(f"unknown patch type: {go_format(d)} in map: {go_format(patch)}")
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _merge_set_element_order(original, patch, node)

    for k in list(patch):
        pv = patch[k]
        is_delete_list = False
        if k.startswith(_DELETE_PRIMITIVE):
            k = _extract_key(k, _DELETE_PRIMITIVE)
            is_delete_list = True
        elif k.startswith(_SET_ORDER):
            continue  # already merged by _merge_set_element_order
        if pv is None:
            original.pop(k, None)
            continue
        if k not in original:
            if not is_delete_list:
                original[k] = _strip_directives(_discard_nulls(pv))
            continue
        ov = original[k]
        if _kind_of(ov) != _kind_of(pv):
            if not is_delete_list:
                original[k] = _strip_directives(_discard_nulls(pv))
            continue
        fnode = sch.field(node, k)
        strategies, merge_key = sch.patch_meta(fnode)
        strategy = _split_strategy(strategies)
        if isinstance(ov, dict):
            original[k] = _strip_directives(pv) if strategy == "replace" else _merge_map(ov, pv, fnode)
        elif isinstance(ov, list):
            original[k] = _merge_slice_handler(ov, pv, fnode, strategy, merge_key, is_delete_list)
        else:
            original[k] = pv
    return original


def _discard_nulls(v: Any) -> Any:
    """Nulls inside a value added whole mean nothing to delete: drop them (discardNullValuesFromPatch)."""
    if isinstance(v, dict):
        return {k: _discard_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_discard_nulls(x) for x in v]
    return v


def _strip_directives(v: Any) -> Any:
    """Remove patch directives from a value stored as is (the typed decoder would drop them)."""
    if isinstance(v, dict):
        return {k: _strip_directives(x) for k, x in v.items()
                if not (k == _DIRECTIVE or k == _RETAIN_KEYS or k.startswith(_SET_ORDER)
                        or k.startswith(_DELETE_PRIMITIVE))}
    if isinstance(v, list):
        return [_strip_directives(x) for x in v
                if not (isinstance(x, dict) and x.get(_DIRECTIVE) == "delete")]
    return v


def _extract_key(k: str, prefix: str) -> str:
    parts = k.split("/", 1)
    if len(parts) <= 1 or parts[0] != prefix:
        raise _SMPError(ERR_BAD_PRIMITIVE_LIST if prefix == _DELETE_PRIMITIVE else ERR_BAD_SET_ORDER, "bad")
    return parts[1]


def _apply_retain_keys(original: dict, patch: dict) -> None:
    if _RETAIN_KEYS not in patch:
        return
    keys = patch.pop(_RETAIN_KEYS)
    if not isinstance(keys, list):
        raise _SMPError(ERR_BAD_RETAIN_KEYS, "bad")
    keep = [k for k in keys]
    for k, v in patch.items():
        if v is None or k.startswith(_DELETE_PRIMITIVE) or k.startswith(_SET_ORDER):
            continue
        if not any(_same(k, r) for r in keep):
            # Kubernetes checks this with ErrBadPatchFormatForRetainKeys in current releases.
            raise _SMPError(ERR_BAD_RETAIN_KEYS, "bad")
    for k in list(original):
        if not any(_same(k, r) for r in keep):
            del original[k]


def _slice_kind(*lists: list) -> str:
    prev = None
    for lst in lists:
        for v in lst:
            cur = _kind_of(v)
            if prev is None:
                prev = cur
                if cur == "slice":
                    raise _SMPError(ERR_NO_LIST_OF_LISTS, "invalid")
            elif prev != cur:
                raise _SMPError("list element types are not identical: "
                                + go_format([list(x) for x in lists]))
    if prev is None:
        raise _SMPError("no elements in any of the given slices")
    return prev


def _merge_set_element_order(original: dict, patch: dict, node: dict | None) -> None:
    for key in [k for k in patch if k.startswith(_SET_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise _SMPError(f"expected a []interface {{}}, but received a {sch.json_kind(order)}")
        okey = _extract_key(key, _SET_ORDER)
        found_orig, found_patch = okey in original, okey in patch
        orig_list = original.get(okey)
        patch_list = patch.get(okey)
        if found_orig and not isinstance(orig_list, list):
            raise _SMPError(f"expected a []interface {{}}, but received a {sch.json_kind(orig_list)}")
        if found_patch and not isinstance(patch_list, list):
            raise _SMPError(f"expected a []interface {{}}, but received a {sch.json_kind(patch_list)}")
        orig_list = orig_list or []
        patch_list = patch_list or []
        fnode = sch.field(node, okey)
        strategies, merge_key = sch.patch_meta(fnode)
        strategy = _split_strategy(strategies)
        _validate_set_order(patch_list, order, merge_key)
        if found_orig and not found_patch:
            merged = orig_list
        elif found_patch and not found_orig:
            merged = _strip_directives(patch_list)
        elif found_orig and found_patch:
            merged = _merge_slice_handler(orig_list, patch_list, fnode, strategy, merge_key, False)
        else:
            continue
        if not merged and not order:
            original[okey] = merged
            patch.pop(okey, None)
            continue
        if merge_key:
            in_patch, server_only = _partition_maps(merged, order, merge_key)
        else:
            in_patch, server_only = _partition_primitives(merged, order)
        kind = _slice_kind(orig_list, patch_list) if (orig_list or patch_list) else "map"
        original[okey] = _normalize_order(in_patch, server_only, order, orig_list, merge_key, kind)
        patch.pop(okey, None)


def _validate_set_order(patch_list: list, order: list, merge_key: str) -> None:
    if not order or not patch_list:
        return
    if merge_key:
        non_delete = [v for v in patch_list if not (isinstance(v, dict) and v.get(_DIRECTIVE) == "delete")]
    else:
        non_delete = list(patch_list)
    pi = si = 0
    while pi < len(non_delete) and si < len(order):
        item = non_delete[pi]
        if isinstance(item, dict) and _DIRECTIVE in item:
            pi += 1
            continue
        if _merge_key_equal(item, order[si], merge_key):
            pi += 1
        si += 1
    if pi < len(non_delete) and si >= len(order):
        raise _SMPError(f"The order in patch list:\n{go_format(patch_list)}\n doesn't match "
                        f"{_SET_ORDER} list:\n{go_format(order)}\n")


def _merge_key_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _same(left, right)
    if not isinstance(left, dict):
        raise _SMPError(f"expected a map[string]interface {{}}, but received a {sch.json_kind(left)}")
    if not isinstance(right, dict):
        raise _SMPError(f"expected a map[string]interface {{}}, but received a {sch.json_kind(right)}")
    if merge_key not in left:
        raise _no_merge_key(left, merge_key)
    if merge_key not in right:
        raise _no_merge_key(right, merge_key)
    return _same(left[merge_key], right[merge_key])


def _merge_slice_handler(original: list, patch: list, fnode: dict | None, strategy: str,
                         merge_key: str, is_delete_list: bool) -> list:
    if not isinstance(original, list) or not isinstance(patch, list):
        raise _SMPError("expected a []interface {}, but received a "
                        + sch.json_kind(patch if isinstance(original, list) else original))
    if strategy == "merge":
        return _merge_slice(original, patch, sch.items(fnode), merge_key, is_delete_list)
    return _strip_directives(patch)


def _merge_slice(original: list, patch: list, elem: dict | None, merge_key: str,
                 is_delete_list: bool) -> list:
    if not original and not patch:
        return original
    kind = _slice_kind(original, patch)
    if kind != "map":
        if is_delete_list:
            return [v for v in original if not any(_same(v, d) for d in patch)]
        merged = _dedupe(original + patch)
    else:
        if not merge_key:
            raise _SMPError("cannot merge lists without merge key for type map")
        original, patch = _merge_special_elements(original, patch, merge_key)
        merged = _merge_without_special(original, patch, merge_key, elem)
    if merge_key:
        in_patch, server_only = _partition_maps(merged, patch, merge_key)
    else:
        in_patch, server_only = _partition_primitives(merged, patch)
    return _normalize_order(in_patch, server_only, patch, original, merge_key, kind)


def _dedupe(values: list) -> list:
    # Go's deduplicateScalars swaps the last element into a duplicate's place; keep its result.
    s = list(values)
    length = len(s) - 1
    i = 0
    while i < length:
        j = i + 1
        while j <= length:
            if _same(s[i], s[j]):
                s[j] = s[length]
                s = s[:length]
                length -= 1
                j -= 1
            j += 1
        i += 1
    return s


def _merge_special_elements(original: list, patch: list, merge_key: str) -> tuple[list, list]:
    without: list = []
    replace = False
    for v in patch:
        if _DIRECTIVE not in v:
            without.append(v)
            continue
        d = v[_DIRECTIVE]
        if d == "delete":
            if merge_key not in v:
                raise _no_merge_key(v, merge_key)
            mv = v[merge_key]
            original = [o for o in original
                        if not (isinstance(o, dict) and merge_key in o and _same(o[merge_key], mv))]
        elif d == "replace":
            replace = True
        elif d == "merge":
            raise _SMPError("merging lists cannot yet be specified in the patch")
        else:
            raise _SMPError(f"unknown patch type: {go_format(d)} in map: {go_format(v)}")
    if replace:
        return _strip_directives(without), []
    return original, without


def _find_by_key(items: list, key: str, value: Any) -> int:
    for i, v in enumerate(items):
        if not isinstance(v, dict):
            raise _SMPError(f"value for key {i} is not a map.")
        if key in v and _same(v[key], value):
            return i
    return -1


def _merge_without_special(original: list, patch: list, merge_key: str, elem: dict | None) -> list:
    original = list(original)
    for v in patch:
        if merge_key not in v:
            raise _no_merge_key(v, merge_key)
        i = _find_by_key(original, merge_key, v[merge_key])
        if i >= 0:
            original[i] = _merge_map(original[i], v, elem)
        else:
            original.append(_strip_directives(_discard_nulls(v)))
    return original


def _partition_primitives(items: list, by: list) -> tuple[list, list]:
    in_patch, server_only = [], []
    for v in items:
        (in_patch if any(_same(v, b) for b in by) else server_only).append(v)
    return in_patch, server_only


def _partition_maps(items: list, by: list, merge_key: str) -> tuple[list, list]:
    in_patch, server_only = [], []
    for v in items:
        if not isinstance(v, dict):
            raise _SMPError(f"expected a map[string]interface {{}}, but received a {sch.json_kind(v)}")
        if merge_key not in v:
            raise _no_merge_key(v, merge_key)
        (in_patch if _find_by_key(by, merge_key, v[merge_key]) >= 0 else server_only).append(v)
    return in_patch, server_only


def _index(order: list, item: Any, merge_key: str, kind: str) -> int:
    if kind == "map":
        val = item.get(merge_key) if isinstance(item, dict) else None
        for i, v in enumerate(order):
            if isinstance(v, dict) and _same(v.get(merge_key), val):
                return i
        return -1
    for i, v in enumerate(order):
        if _same(v, item):
            return i
    return -1


def _normalize_slice_order(to_sort: list, order: list, merge_key: str, kind: str) -> list:
    to_delete: list = []
    if kind == "map":
        for lst in (to_sort, order):
            for v in lst:
                if not isinstance(v, dict):
                    raise _SMPError(f"expected a map[string]interface {{}}, but received a {sch.json_kind(v)}")
                if merge_key not in v:
                    raise _no_merge_key(v, merge_key)
        keep = [v for v in to_sort if v.get(_DIRECTIVE) != "delete"]
        to_delete = [v for v in to_sort if v.get(_DIRECTIVE) == "delete"]
        to_sort = keep
    # Go's sort.SliceStable with a "less" that is true whenever either side is
    # unordered; replay it with the same insertion sort so results match.
    s = list(to_sort)
    idx = [_index(order, v, merge_key, kind) for v in s]

    def less(a: int, b: int) -> bool:
        if a >= 0 and b >= 0:
            return a < b
        return True
    _stable_sort(s, idx, less)
    return s + to_delete


def _stable_sort(s: list, idx: list[int], less) -> None:
    """Go's sort.SliceStable (insertion sort in blocks of 20, then symMerge) on parallel lists."""
    n = len(s)

    def swap(i: int, j: int) -> None:
        s[i], s[j] = s[j], s[i]
        idx[i], idx[j] = idx[j], idx[i]

    def lt(i: int, j: int) -> bool:
        return less(idx[i], idx[j])

    def insertion(a: int, b: int) -> None:
        for i in range(a + 1, b):
            j = i
            while j > a and lt(j, j - 1):
                swap(j, j - 1)
                j -= 1

    def rotate(a: int, m: int, b: int) -> None:
        i, j = m - a, b - m
        while i != j:
            if i > j:
                swap_range(m - i, m, j)
                i -= j
            else:
                swap_range(m - i, m + j - i, i)
                j -= i
        swap_range(m - i, m, i)

    def swap_range(a: int, b: int, k: int) -> None:
        for i in range(k):
            swap(a + i, b + i)

    def sym_merge(a: int, m: int, b: int) -> None:
        if m - a == 1:
            i, j = m, b
            while i < j:
                h = (i + j) // 2
                if lt(h, a):
                    i = h + 1
                else:
                    j = h
            for k in range(a, i - 1):
                swap(k, k + 1)
            return
        if b - m == 1:
            i, j = a, m
            while i < j:
                h = (i + j) // 2
                if not lt(m, h):
                    i = h + 1
                else:
                    j = h
            for k in range(m, i, -1):
                swap(k, k - 1)
            return
        mid = (a + b) // 2
        nn = mid + m
        if m > mid:
            start, r = nn - b, mid
        else:
            start, r = a, m
        p = nn - 1
        while start < r:
            c = (start + r) // 2
            if not lt(p - c, c):
                start = c + 1
            else:
                r = c
        end = nn - start
        if start < m and m < end:
            rotate(start, m, end)
        if a < start and start < mid:
            sym_merge(a, start, mid)
        if mid < end and end < b:
            sym_merge(mid, end, b)

    block = 20
    a, b = 0, block
    while b <= n:
        insertion(a, b)
        a, b = b, b + block
    insertion(a, n)
    while block < n:
        a, b = 0, 2 * block
        while b <= n:
            sym_merge(a, a + block, b)
            a, b = b, b + 2 * block
        m = a + block
        if m < n:
            sym_merge(a, m, n)
        block *= 2


def _normalize_order(in_patch: list, server_only: list, patch_order: list, server_order: list,
                     merge_key: str, kind: str) -> list:
    in_patch = _normalize_slice_order(in_patch, patch_order, merge_key, kind)
    server_only = _normalize_slice_order(server_only, server_order, merge_key, kind)
    # Interleave: a server-only item goes first only when both are in the live
    # order and it came first there; otherwise the patch item leads.
    out: list = []
    i = j = 0
    while i < len(server_only) or j < len(in_patch):
        if i >= len(server_only):
            out.append(in_patch[j])
            j += 1
        elif j >= len(in_patch):
            out.append(server_only[i])
            i += 1
        else:
            li = _index(server_order, server_only[i], merge_key, kind)
            ri = _index(server_order, in_patch[j], merge_key, kind)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(server_only[i])
                i += 1
            else:
                out.append(in_patch[j])
                j += 1
    return out


# ---------------------------------------------------------------------------
# JSON merge patch (RFC 7386, evanphx/json-patch MergePatch)


def merge_patch(doc: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return _prune_nulls(patch)
    if not isinstance(doc, dict):
        doc = {}
    out = dict(doc)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_patch(out[k], v)
        else:
            out[k] = _prune_nulls(v)
    return out


def _prune_nulls(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _prune_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_prune_nulls(x) for x in v]
    return v


# ---------------------------------------------------------------------------
# JSON patch (RFC 6902) with evanphx/json-patch v4's semantics and messages


class _JPError(Exception):
    pass


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def _go_atoi(key: str) -> int:
    try:
        if not key or key.strip() != key or "_" in key:
            raise ValueError
        return int(key, 10)
    except ValueError:
        raise _JPError(f'strconv.Atoi: parsing "{key}": invalid syntax') from None


def _find(doc: Any, path: str) -> tuple[Any, str] | tuple[None, None]:
    split = path.split("/")
    if len(split) < 2:
        return None, None
    cur = doc
    for part in split[1:-1]:
        key = _unescape(part)
        if isinstance(cur, dict):
            nxt = cur.get(key)
        elif isinstance(cur, list):
            try:
                i = _go_atoi(key)
            except _JPError:
                return None, None
            if i < 0 or i >= len(cur):
                return None, None
            nxt = cur[i]
        else:
            return None, None
        if not isinstance(nxt, (dict, list)):
            return None, None
        cur = nxt
    return cur, _unescape(split[-1])


def _invalid_index(i: int) -> _JPError:
    return _JPError(f"Unable to access invalid index: {i}: invalid index referenced")


def _c_get(con: Any, key: str) -> Any:
    if isinstance(con, dict):
        return con.get(key)
    i = _go_atoi(key)
    if i >= len(con) or i < 0:
        raise _invalid_index(i)
    return con[i]


def _c_add(con: Any, key: str, val: Any) -> None:
    if isinstance(con, dict):
        con[key] = val
        return
    if key == "-":
        con.append(val)
        return
    try:
        i = _go_atoi(key)
    except _JPError as e:
        raise _JPError(f"value was not a proper array index: '{key}': {e}") from None
    size = len(con) + 1
    if i >= size or i < -size:
        raise _invalid_index(i)
    if i < 0:
        i += size
    con.insert(i, val)


def _c_remove(con: Any, key: str) -> None:
    if isinstance(con, dict):
        if key not in con:
            raise _JPError(f"Unable to remove nonexistent key: {key}: missing value")
        del con[key]
        return
    i = _go_atoi(key)
    if i >= len(con) or i < -len(con):
        raise _invalid_index(i)
    del con[i]


def _c_set(con: Any, key: str, val: Any) -> None:
    if isinstance(con, dict):
        con[key] = val
    else:
        con[_go_atoi(key)] = val


def _op_str(op: dict, name: str, missing: str) -> str:
    if name not in op or op[name] is None:
        raise _JPError(f"{missing}: missing value")
    v = op[name]
    if not isinstance(v, str):
        raise _JPError(f"json: cannot unmarshal {sch.json_kind(v)} into Go value of type string")
    return v


def json_patch(doc: Any, ops: list) -> Any:
    """Apply RFC 6902 operations to doc (consumed); raises _JPError with the library's text."""
    for op in ops:
        kind = op.get("op")
        kind = kind if isinstance(kind, str) else "unknown"
        if kind == "add":
            try:
                path = _op_str(op, "path", "operation missing path field")
            except _JPError:
                raise _JPError("add operation failed to decode path: missing value") from None
            con, key = _find(doc, path)
            if con is None:
                raise _JPError(f'add operation does not apply: doc is missing path: "{path}": missing value')
            try:
                _c_add(con, key, copy.deepcopy(op.get("value")))
            except _JPError as e:
                raise _JPError(f"error in add for path: '{path}': {e}") from None
        elif kind == "remove":
            try:
                path = _op_str(op, "path", "operation missing path field")
            except _JPError:
                raise _JPError("remove operation failed to decode path: missing value") from None
            con, key = _find(doc, path)
            if con is None:
                raise _JPError(f'remove operation does not apply: doc is missing path: "{path}": missing value')
            try:
                _c_remove(con, key)
            except _JPError as e:
                raise _JPError(f"error in remove for path: '{path}': {e}") from None
        elif kind == "replace":
            try:
                path = _op_str(op, "path", "operation missing path field")
            except _JPError as e:
                raise _JPError(f"replace operation failed to decode path: {e}") from None
            con, key = _find(doc, path)
            if con is None:
                raise _JPError(f"replace operation does not apply: doc is missing path: {path}: missing value")
            try:
                _c_get(con, key)
            except _JPError:
                raise _JPError(f"replace operation does not apply: doc is missing key: {path}: missing value") from None
            _c_set(con, key, copy.deepcopy(op.get("value")))
        elif kind == "move":
            try:
                frm = _op_str(op, "from", "operation, missing from field")
            except _JPError as e:
                raise _JPError(f"move operation failed to decode from: {e}") from None
            con, key = _find(doc, frm)
            if con is None:
                raise _JPError(f"move operation does not apply: doc is missing from path: {frm}: missing value")
            try:
                val = _c_get(con, key)
                _c_remove(con, key)
            except _JPError as e:
                raise _JPError(f"error in move for path: '{key}': {e}") from None
            try:
                path = _op_str(op, "path", "operation missing path field")
            except _JPError as e:
                raise _JPError(f"move operation failed to decode path: {e}") from None
            con, key = _find(doc, path)
            if con is None:
                raise _JPError(f"move operation does not apply: doc is missing destination path: {path}: missing value")
            try:
                _c_add(con, key, val)
            except _JPError as e:
                raise _JPError(f"error in move for path: '{path}': {e}") from None
        elif kind == "test":
            try:
                path = _op_str(op, "path", "operation missing path field")
            except _JPError as e:
                raise _JPError(f"test operation failed to decode path: {e}") from None
            con, key = _find(doc, path)
            if con is None:
                raise _JPError(f"test operation does not apply: is missing path: {path}: missing value")
            try:
                val = _c_get(con, key)
            except _JPError as e:
                raise _JPError(f"error in test for path: '{path}': {e}") from None
            want = op.get("value")
            if val is None:
                if want is None:
                    continue
                raise _JPError(f"testing value {path} failed: test failed")
            if "value" not in op or not _same(val, want):
                raise _JPError(f"testing value {path} failed: test failed")
        elif kind == "copy":
            try:
                frm = _op_str(op, "from", "operation, missing from field")
            except _JPError as e:
                raise _JPError(f"copy operation failed to decode from: {e}") from None
            con, key = _find(doc, frm)
            if con is None:
                raise _JPError(f"copy operation does not apply: doc is missing from path: {frm}: missing value")
            try:
                val = _c_get(con, key)
            except _JPError as e:
                raise _JPError(f"error in copy for from: '{frm}': {e}") from None
            try:
                path = _op_str(op, "path", "operation missing path field")
            except _JPError:
                raise _JPError("copy operation failed to decode path: missing value") from None
            con, key = _find(doc, path)
            if con is None:
                raise _JPError(f"copy operation does not apply: doc is missing destination path: {path}: missing value")
            try:
                _c_add(con, key, copy.deepcopy(val))
            except _JPError as e:
                raise _JPError(f"error while adding value during copy: {e}") from None
        else:
            raise _JPError(f"Unexpected kind: {kind}")
    return doc


# ---------------------------------------------------------------------------
# The entry point the API server calls


class PatchNotApplicable(StatusError):
    """422 for a patch that does not apply; .cause keeps the library's text for logs and tests."""

    def __init__(self, cause: str):
        # NewGenericServerResponse(422, ..., isUnexpectedResponse=false): the client sees only
        # the generic message ("The request is invalid: the server rejected our request ...").
        super().__init__(422, "Invalid", "the server rejected our request due to an error in our request", {})
        self.cause = cause


def _unprocessable(message: str) -> StatusError:
    return PatchNotApplicable(message)


def _patched_not_object(result: Any) -> StatusError:
    text = orjson.dumps(result).decode()
    cause = (f"json: cannot unmarshal {sch.json_kind(result)} into Go value of type "
             "map[string]interface {}")
    return StatusError(422, "Invalid", f' "" is invalid: patch: Invalid value: "{text}": {cause}',
                       {"causes": [{"reason": "FieldValueInvalid",
                                    "message": f'Invalid value: "{text}": {cause}', "field": "patch"}]})


def _smp_status(e: _SMPError) -> StatusError:
    if e.kind == "bad":
        return bad_request(e.message)
    if e.kind == "invalid":
        return _unprocessable(e.message)
    # Errors kube-apiserver does not classify become a 500 Status with an empty reason.
    return StatusError(500, "", e.message)


def apply_patch(patch_type: str, original: dict, body: bytes, rt: ResourceType) -> dict:
    """The object after applying a PATCH body of the given Content-Type to original.

    original is not modified. Raises StatusError as kube-apiserver would for a
    malformed body (400) or a patch that does not apply (422 / 500).
    """
    patch_type = patch_type.split(";", 1)[0].strip().lower()
    if patch_type == STRATEGIC:
        patch = _loads(body)
        if not isinstance(patch, dict):
            raise bad_request(f"json: cannot unmarshal {sch.json_kind(patch)} into Go value of type "
                              "map[string]interface {}")
        try:
            result = strategic_merge(copy.deepcopy(original), patch, sch.kind_schema(rt))
        except _SMPError as e:
            raise _smp_status(e) from None
        return result
    if patch_type == MERGE:
        try:
            patch = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise bad_request("Invalid JSON Patch") from None
        if patch is None or isinstance(patch, (str, int, float, bool)):
            raise bad_request("Invalid JSON Patch")
        result = merge_patch(copy.deepcopy(original), patch)
        if not isinstance(result, dict):
            raise _patched_not_object(result)
        return result
    if patch_type == JSON_PATCH:
        ops = _loads(body)
        if not isinstance(ops, list):
            raise bad_request(f"json: cannot unmarshal {sch.json_kind(ops)} into Go value of type jsonpatch.Patch")
        for op in ops:
            if not isinstance(op, dict):
                raise bad_request(f"json: cannot unmarshal {sch.json_kind(op)} into Go value of type "
                                  "jsonpatch.Operation")
        if len(ops) > MAX_JSON_PATCH_OPERATIONS:
            raise StatusError(413, "RequestEntityTooLarge",
                              f"Request entity too large: The allowed maximum operations in a JSON patch "
                              f"is {MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}")
        try:
            result = json_patch(copy.deepcopy(original), ops)
        except _JPError as e:
            raise _unprocessable(str(e)) from None
        if not isinstance(result, dict):
            raise _patched_not_object(result)
        return result
    if patch_type == APPLY_YAML:
        raise StatusError(415, "UnsupportedMediaType",
                          "apply patches go through kubesvc.objects.apply.server_side_apply")
    raise StatusError(415, "UnsupportedMediaType",
                      f'the body of the request was in an unknown format - accepted media types include: '
                      f'{", ".join(PATCH_TYPES)}')


def strict_patch_error(patch_type: str, body: bytes, patched: dict, unknown: list[str]) -> StatusError:
    """The 422 kube-apiserver answers a non-apply PATCH whose result has unknown fields under Strict.

    kubectl prints it as: The request is invalid: patch: Invalid value: "map[spec:map[foo:1]]":
    strict decoding error: unknown field "spec.foo". The value is the decoded patch for a
    strategic merge patch (Go's %+v) and the patched object's JSON for the other two types.
    """
    patch_type = patch_type.split(";", 1)[0].strip().lower()
    if patch_type == STRATEGIC:
        try:
            text = go_format(orjson.loads(body))
        except orjson.JSONDecodeError:
            text = body.decode("utf-8", "replace")
    else:
        text = orjson.dumps(_sorted(patched)).decode()
    return sch.strict_patch_error(text, unknown)


def _sorted(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _sorted(v[k]) for k in sorted(v)}
    if isinstance(v, list):
        return [_sorted(x) for x in v]
    return v


# The rest of the contract the API server calls lives in sibling modules; one import point.
from kubesvc.objects.apply import parse_apply_body, server_side_apply  # noqa: E402
from kubesvc.objects.managedfields import update_managed_fields  # noqa: E402
from kubesvc.objects.schema import prune_unknown, unknown_fields  # noqa: E402

__all__ = ["apply_patch", "strict_patch_error", "server_side_apply", "update_managed_fields", "unknown_fields", "prune_unknown",
           "parse_apply_body", "strategic_merge", "merge_patch", "json_patch", "STRATEGIC", "MERGE",
           "JSON_PATCH", "APPLY_YAML"]
