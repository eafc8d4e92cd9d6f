"""Protobuf decoding errors name the URL's kind; a client-go JSON Scale that omits a
zero spec.replicas scales to 0."""

from __future__ import annotations

import json


def _call(api, method: str, path: str, body: bytes, ct: str = "application/json") -> tuple[int, dict]:
    import urllib.error
    import urllib.request
    req = urllib.request.Request(api.url + path, method=method, data=body, headers={"Content-Type": ct})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_malformed_protobuf_error_names_the_kind_of_the_url(apiserver):
    code, status = _call(apiserver, "POST", "/api/v1/namespaces", b"k8s\x00\xff\xff",
                         "application/vnd.kubernetes.protobuf")
    assert code == 400 and "(must be of type Namespace)" in status["message"], status


def test_scale_to_zero_from_client_go_json(apiserver):
    # client-go's JSON Scale omits a zero spec.replicas: `spec: {}` means 0.
    apiserver.kubectl("create", "deployment", "to-zero", "--image=nginx", "--replicas=2")
    scale = json.loads(apiserver.kubectl("get", "deploy", "to-zero", "--subresource=scale", "-o", "json").stdout)
    scale["spec"] = {}
    code, out = _call(apiserver, "PUT", "/apis/apps/v1/namespaces/default/deployments/to-zero/scale",
                      json.dumps(scale).encode())
    assert code == 200 and out["spec"] == {"replicas": 0}, out
    got = apiserver.kubectl("get", "deploy", "to-zero", "--subresource=scale")
    assert got.stdout.split("\n")[1].split()[:2] == ["to-zero", "0"]
    apiserver.kubectl("delete", "deploy", "to-zero")
