"""kubectl's typed commands send protobuf bodies; kubesvc stores exactly what they meant.

`kubectl create namespace|deployment|service|configmap`, `expose`, `scale`
and `delete` against a real kubesvc apiserver, checked by reading the objects back
as JSON; and malformed protobuf refused with kube-apiserver's 400.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest

from tests.e2e.tables.kubectl_get_output import parse, without


def get_json(apiserver, *args: str) -> dict:
    return json.loads(apiserver.kubectl("get", *args, "-o", "json").stdout)


def test_create_namespace(apiserver):
    out = apiserver.kubectl("create", "namespace", "team-a").stdout
    assert out.strip() == "namespace/team-a created"
    ns = get_json(apiserver, "namespace", "team-a")
    assert ns["metadata"]["name"] == "team-a" and ns["kind"] == "Namespace"
    assert "generateName" not in ns["metadata"]  # protobuf's empty strings are not stored


def test_create_deployment(apiserver):
    out = apiserver.kubectl("create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=80").stdout
    assert out.strip() == "deployment.apps/web created"
    d = get_json(apiserver, "deployment", "web")
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert (c["name"], c["image"], c["ports"][0]["containerPort"]) == ("nginx", "nginx", 80)
    assert d["spec"]["template"]["metadata"]["labels"] == {"app": "web"}


def test_create_deployment_with_zero_replicas_keeps_zero(apiserver):
    apiserver.kubectl("create", "deployment", "idle", "--image=nginx", "--replicas=0")
    assert get_json(apiserver, "deployment", "idle")["spec"]["replicas"] == 0


def test_create_deployment_with_a_command(apiserver):
    apiserver.kubectl("create", "deployment", "sleeper", "--image=busybox", "--", "sleep", "3600")
    c = get_json(apiserver, "deployment", "sleeper")["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["sleep", "3600"]


def test_create_services(apiserver):
    apiserver.kubectl("create", "service", "clusterip", "redis", "--tcp=6379:6379")
    apiserver.kubectl("create", "service", "clusterip", "headless", "--clusterip=None", "--tcp=80:80")
    apiserver.kubectl("create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30081")
    apiserver.kubectl("create", "service", "loadbalancer", "lb", "--tcp=80:8080")
    apiserver.kubectl("create", "service", "externalname", "ext", "--external-name=example.com")
    redis = get_json(apiserver, "svc", "redis")["spec"]
    assert redis["type"] == "ClusterIP" and redis["selector"] == {"app": "redis"}
    assert redis["ports"][0]["port"] == 6379 and redis["ports"][0]["targetPort"] == 6379
    assert get_json(apiserver, "svc", "headless")["spec"]["clusterIP"] == "None"
    np = get_json(apiserver, "svc", "np")["spec"]
    assert np["type"] == "NodePort" and np["ports"][0]["nodePort"] == 30081 and np["ports"][0]["targetPort"] == 8080
    assert get_json(apiserver, "svc", "ext")["spec"]["externalName"] == "example.com"
    headers, rows = parse(apiserver.kubectl("get", "svc", "np", "headless", "ext").stdout)
    assert without(headers, rows, "AGE", "CLUSTER-IP") == [
        ["np", "NodePort", "<none>", "80:30081/TCP"],
        ["headless", "ClusterIP", "<none>", "80/TCP"],
        ["ext", "ExternalName", "example.com", "<none>"],
    ]


def test_expose_and_scale(apiserver):
    apiserver.kubectl("create", "deployment", "api", "--image=nginx", "--port=80")
    apiserver.kubectl("expose", "deployment", "api", "--port=80", "--target-port=8080")
    svc = get_json(apiserver, "svc", "api")["spec"]
    assert svc["selector"] == {"app": "api"} and svc["ports"][0]["targetPort"] == 8080
    apiserver.kubectl("scale", "deployment", "api", "--replicas=4")
    assert get_json(apiserver, "deployment", "api")["spec"]["replicas"] == 4


def test_create_configmap_with_binary_data(apiserver, tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)))
    apiserver.kubectl("create", "configmap", "settings", "--from-literal=mode=fast", f"--from-file=blob.bin={blob}")
    cm = get_json(apiserver, "configmap", "settings")
    assert cm["data"] == {"mode": "fast"}
    assert base64.b64decode(cm["binaryData"]["blob.bin"]) == bytes(range(256))


def test_delete_by_name(apiserver):
    apiserver.kubectl("create", "configmap", "doomed", "--from-literal=a=b")
    apiserver.kubectl("delete", "configmap", "doomed")
    assert apiserver.kubectl("get", "configmap", "doomed", check=False).returncode != 0


def _post(apiserver, path: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(apiserver.url + path, data=body, method="POST",
                                 headers={"Content-Type": "application/vnd.kubernetes.protobuf",
                                          "Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("body,detail", [
    (b"k8s\x00\x0a\xff\xff", "unexpected EOF"),
    (b"not protobuf at all", "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"),
    (b"k8s\x00", "Object 'Kind' is missing"),
])
def test_malformed_protobuf_is_a_bad_request(apiserver, body, detail):
    before = apiserver.kubectl("get", "configmaps", "-o", "name").stdout
    code, status = _post(apiserver, "/api/v1/namespaces/default/configmaps", body)
    assert code == 400, status
    assert status["kind"] == "Status" and status["reason"] == "BadRequest"
    assert status["message"].startswith("the object provided is unrecognized (must be of type ")
    assert detail in status["message"]
    assert apiserver.kubectl("get", "configmaps", "-o", "name").stdout == before


def _send(apiserver, method: str, path: str, obj: dict) -> tuple[int, dict]:
    from kubesvc.apiserver import protobuf
    req = urllib.request.Request(apiserver.url + path, data=protobuf.encode(obj), method=method,
                                 headers={"Content-Type": "application/vnd.kubernetes.protobuf",
                                          "Accept": "application/vnd.kubernetes.protobuf, application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_client_go_scale_and_delete_options_as_protobuf(apiserver):
    # what a typed client-go client sends: an autoscaling/v1 Scale to /scale, DeleteOptions on delete
    apiserver.kubectl("create", "deployment", "scaled", "--image=nginx", "--replicas=2")
    code, scale = _send(apiserver, "PUT", "/apis/apps/v1/namespaces/default/deployments/scaled/scale",
                        {"apiVersion": "autoscaling/v1", "kind": "Scale",
                         "metadata": {"name": "scaled", "namespace": "default"}, "spec": {"replicas": 0}})
    assert code == 200, scale
    assert get_json(apiserver, "deployment", "scaled")["spec"]["replicas"] == 0

    apiserver.kubectl("create", "configmap", "guarded", "--from-literal=a=b")
    code, status = _send(apiserver, "DELETE", "/api/v1/namespaces/default/configmaps/guarded",
                         {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": "not-the-uid"}})
    assert code == 409 and status["reason"] == "Conflict"
    assert "Precondition failed: UID in precondition: not-the-uid" in status["message"]
    code, _ = _send(apiserver, "DELETE", "/api/v1/namespaces/default/configmaps/guarded",
                    {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                     "propagationPolicy": "Background"})
    assert code == 200
    assert apiserver.kubectl("get", "configmap", "guarded", check=False).returncode != 0
