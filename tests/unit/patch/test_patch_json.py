"""RFC 7386 merge patches and RFC 6902 JSON patches, with kube-apiserver's errors."""

from __future__ import annotations

import json

import pytest

from kubesvc.objects.errors import StatusError
from kubesvc.objects.patch import JSON_PATCH, MERGE, apply_patch
from kubesvc.objects.registry import by_kind

CM = by_kind("", "ConfigMap")
OBJ = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}},
       "data": {"k": "v", "list": "x"}, "extra": [1, 2, 3]}


def jp(ops: list) -> dict:
    return apply_patch(JSON_PATCH, OBJ, json.dumps(ops).encode(), CM)


def jp_error(ops) -> StatusError:
    with pytest.raises(StatusError) as e:
        apply_patch(JSON_PATCH, OBJ, ops if isinstance(ops, bytes) else json.dumps(ops).encode(), CM)
    return e.value


def test_merge_patch_rfc7386():
    out = apply_patch(MERGE, OBJ, b'{"metadata":{"labels":{"a":null,"b":"2"}},"data":{"k":"w"},"extra":[9]}', CM)
    assert out["metadata"]["labels"] == {"b": "2"}
    assert out["data"] == {"k": "w", "list": "x"}
    assert out["extra"] == [9]
    assert OBJ["data"]["k"] == "v"


@pytest.mark.parametrize("body", [b"nope", b'"str"', b"null"])
def test_merge_patch_bad_body(body):
    with pytest.raises(StatusError) as e:
        apply_patch(MERGE, OBJ, body, CM)
    assert (e.value.code, e.value.reason, e.value.message) == (400, "BadRequest", "Invalid JSON Patch")


def test_json_patch_all_ops():
    out = jp([
        {"op": "test", "path": "/data/k", "value": "v"},
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
        {"op": "replace", "path": "/data/k", "value": "w"},
        {"op": "remove", "path": "/metadata/labels/a"},
        {"op": "move", "from": "/data/list", "path": "/data/moved"},
        {"op": "copy", "from": "/data/k", "path": "/data/copied"},
        {"op": "add", "path": "/extra/1", "value": 7},
        {"op": "add", "path": "/extra/-", "value": 8},
        {"op": "remove", "path": "/extra/0"},
    ])
    assert out["metadata"]["labels"] == {"b": "2"}
    assert out["data"] == {"k": "w", "moved": "x", "copied": "w"}
    assert out["extra"] == [7, 2, 3, 8]


def test_json_patch_escaped_pointer():
    out = jp([{"op": "add", "path": "/metadata/labels/example.com~1role", "value": "x"}])
    assert out["metadata"]["labels"]["example.com/role"] == "x"


@pytest.mark.parametrize("ops,cause", [
    ([{"op": "test", "path": "/data/k", "value": "other"}], "testing value /data/k failed: test failed"),
    ([{"op": "remove", "path": "/data/nope"}],
     "error in remove for path: '/data/nope': Unable to remove nonexistent key: nope: missing value"),
    ([{"op": "add", "path": "/spec/ports/0", "value": 1}],
     'add operation does not apply: doc is missing path: "/spec/ports/0": missing value'),
    ([{"op": "replace", "path": "/extra/7", "value": 1}],
     "replace operation does not apply: doc is missing key: /extra/7: missing value"),
    ([{"op": "remove", "path": "/extra/9"}],
     "error in remove for path: '/extra/9': Unable to access invalid index: 9: invalid index referenced"),
    ([{"op": "frob", "path": "/x"}], "Unexpected kind: frob"),
])
def test_json_patch_failures_are_422_with_the_library_text(ops, cause):
    err = jp_error(ops)
    assert (err.code, err.reason) == (422, "Invalid")
    assert err.message == "the server rejected our request due to an error in our request"
    assert err.cause == cause
    assert "causes" not in err.status().get("details", {}), "kube-apiserver sends no causes here"


@pytest.mark.parametrize("body,message", [
    (b'{"op":"add"}', "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
    (b'["x"]', "json: cannot unmarshal string into Go value of type jsonpatch.Operation"),
    (b'[{"op":', "unexpected end of JSON input"),
])
def test_json_patch_malformed_body_is_400(body, message):
    err = jp_error(body)
    assert (err.code, err.reason, err.message) == (400, "BadRequest", message)


def test_json_patch_failure_changes_nothing():
    before = json.dumps(OBJ, sort_keys=True)
    jp_error([{"op": "add", "path": "/data/z", "value": "1"}, {"op": "test", "path": "/data/k", "value": "no"}])
    assert json.dumps(OBJ, sort_keys=True) == before


def test_strict_patch_error_wording():
    from kubesvc.objects.patch import STRATEGIC, strict_patch_error
    e = strict_patch_error(STRATEGIC, b'{"spec":{"foo":1}}', {}, ["spec.foo"])
    assert (e.code, e.reason) == (422, "Invalid")
    assert e.message == ' "" is invalid: patch: Invalid value: "map[spec:map[foo:1]]": ' \
                        'strict decoding error: unknown field "spec.foo"'
    assert e.details["causes"][0]["field"] == "patch"
