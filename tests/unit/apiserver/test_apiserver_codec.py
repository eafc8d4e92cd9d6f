"""Request bodies decoded with kube-apiserver's error texts; keys and Accept headers."""

from __future__ import annotations

import pytest

from kubesvc.apiserver.codec import decode_body, parse_accept
from kubesvc.apiserver.watchcache import object_key, parse_key
from kubesvc.objects.errors import StatusError
from kubesvc.objects.registry import by_kind


@pytest.mark.parametrize("body,expect", [
    (b'{"kind": "Pod", ', "unexpected end of JSON input"),
    (b'{"kind": x}', "invalid character 'x' looking for beginning of value"),
    (b'{kind: 1}', "invalid character 'k' looking for beginning of object key string"),
    (b'{"kind" 1}', "invalid character '1' after object key"),
    (b'{"a": 1 "b": 2}', "invalid character '\"' after object key:value pair"),
    (b'[1 2]', "invalid character '2' after array element"),
])
def test_json_errors_worded_as_go(body, expect):
    with pytest.raises(StatusError) as err:
        decode_body("application/json", body, "Pod")
    assert err.value.code == 400
    assert err.value.message.startswith("the object provided is unrecognized (must be of type Pod): "
                                        "couldn't get version/kind; json parse error: " + expect)


def test_bodies():
    assert decode_body("application/json", b'{"kind":"Pod"}', "Pod") == {"kind": "Pod"}
    assert decode_body("application/yaml", b"kind: Pod\n", "Pod") == {"kind": "Pod"}
    with pytest.raises(StatusError) as err:
        decode_body("text/plain", b"x", "Pod")
    assert err.value.code == 415


def test_accept():
    mts = parse_accept("application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
    assert mts[0].as_ == "Table" and mts[0].params["g"] == "meta.k8s.io" and mts[1].as_ == ""


def test_keys_round_trip():
    for kind, group, ns in (("Pod", "", "default"), ("Namespace", "", None), ("Deployment", "apps", "x"),
                            ("EndpointSlice", "discovery.k8s.io", "y"), ("Node", "", None)):
        rt = by_kind(group, kind)
        key = object_key(rt, ns, "name-1")
        assert parse_key(key) == (rt, ns or "", "name-1"), key
