"""The API over plain HTTP for what kubectl's verbs do not reach directly:
deletecollection, dryRun, YAML bodies, PartialObjectMetadata, pods/binding,
pods/log, scale on replicasets, Tables for watches, discovery documents."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.lib.cluster import APIServer

CMS = "/api/v1/namespaces/default/configmaps"
PODS = "/api/v1/namespaces/default/pods"


def call(api: APIServer, method: str, path: str, body=None, headers: dict | None = None) -> tuple[int, dict, dict]:
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(api.url + path, method=method, data=data,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


def cm(name: str, **labels) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}}


def test_deletecollection_and_dry_run(apiserver):
    for i in range(4):
        assert call(apiserver, "POST", CMS, cm(f"dc-{i}", batch="dc" if i < 3 else "keep"))[0] == 201
    status, obj, _ = call(apiserver, "POST", CMS + "?dryRun=All", cm("dry"))
    assert status == 201 and obj["metadata"]["uid"]
    assert call(apiserver, "GET", CMS + "/dry")[0] == 404
    status, lst, _ = call(apiserver, "DELETE", CMS + "?labelSelector=batch%3Ddc&dryRun=All")
    assert status == 200 and len(lst["items"]) == 3
    assert len(call(apiserver, "GET", CMS + "?labelSelector=batch")[1]["items"]) == 4
    status, lst, _ = call(apiserver, "DELETE", CMS + "?labelSelector=batch%3Ddc")
    assert status == 200 and sorted(o["metadata"]["name"] for o in lst["items"]) == ["dc-0", "dc-1", "dc-2"]
    left = call(apiserver, "GET", CMS + "?labelSelector=batch")[1]["items"]
    assert [o["metadata"]["name"] for o in left] == ["dc-3"]
    call(apiserver, "DELETE", CMS + "/dc-3")


def test_yaml_body_and_partial_metadata(apiserver):
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n"
    status, obj, _ = call(apiserver, "POST", CMS, body, {"Content-Type": "application/yaml"})
    assert status == 201 and obj["data"] == {"a": "b"}
    status, obj, _ = call(apiserver, "POST", CMS, b"a: [", {"Content-Type": "application/yaml"})
    assert status == 400 and obj["reason"] == "BadRequest"
    status, lst, _ = call(apiserver, "GET", CMS, headers={
        "Accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"})
    assert lst["kind"] == "PartialObjectMetadataList"
    assert all(i["kind"] == "PartialObjectMetadata" and "data" not in i for i in lst["items"])
    call(apiserver, "DELETE", CMS + "/from-yaml")


def test_binding_and_log(apiserver):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bindme"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    assert call(apiserver, "POST", PODS, pod)[0] == 201
    status, _, _ = call(apiserver, "GET", PODS + "/bindme/log")
    assert status == 400
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bindme"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}}
    status, st, _ = call(apiserver, "POST", PODS + "/bindme/binding", binding)
    assert status == 201 and st["status"] == "Success"
    _, p, _ = call(apiserver, "GET", PODS + "/bindme")
    assert p["spec"]["nodeName"] == "node-1"
    assert any(c["type"] == "PodScheduled" and c["status"] == "True" for c in p["status"]["conditions"])
    status, err, _ = call(apiserver, "POST", PODS + "/bindme/binding", binding)
    assert status == 409 and 'pod bindme is already assigned to node "node-1"' in err["message"]
    # no such node registered: a clear error instead of a hang
    status, err, _ = call(apiserver, "GET", PODS + "/bindme/log")
    assert status == 404 and err["message"] == 'nodes "node-1" not found'
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}}
    assert call(apiserver, "POST", "/api/v1/nodes", node)[0] == 201
    status, err, _ = call(apiserver, "GET", PODS + "/bindme/log")
    assert status == 404 and "daemonEndpoints" in err["message"]
    call(apiserver, "DELETE", PODS + "/bindme", {"gracePeriodSeconds": 0})
    call(apiserver, "DELETE", "/api/v1/nodes/node-1")


def test_replicaset_scale_and_status(apiserver):
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs1"},
          "spec": {"selector": {"matchLabels": {"a": "b"}},
                   "template": {"metadata": {"labels": {"a": "b"}},
                                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    path = "/apis/apps/v1/namespaces/default/replicasets"
    status, obj, _ = call(apiserver, "POST", path, rs)
    assert status == 201 and obj["spec"]["replicas"] == 1 and obj["metadata"]["generation"] == 1
    assert apiserver.kubectl("scale", "rs", "rs1", "--replicas=4").stdout.strip() == "replicaset.apps/rs1 scaled"
    _, obj, _ = call(apiserver, "GET", path + "/rs1")
    assert obj["spec"]["replicas"] == 4 and obj["metadata"]["generation"] == 2
    obj["status"] = {"replicas": 4, "readyReplicas": 4}
    status, obj2, _ = call(apiserver, "PUT", path + "/rs1/status", obj)
    assert status == 200 and obj2["status"]["replicas"] == 4 and obj2["metadata"]["generation"] == 2
    status, err, _ = call(apiserver, "PUT", path + "/rs1/scale",
                          {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "rs1"},
                           "spec": {"replicas": -1}})
    assert status == 422 and "spec.replicas: Invalid value: -1: must be greater than or equal to 0" in err["message"]
    bad = dict(rs, metadata={"name": "rs2"})
    bad["spec"] = dict(rs["spec"], selector={"matchLabels": {"a": "other"}})
    status, err, _ = call(apiserver, "POST", path, bad)
    assert status == 422
    assert "spec.template.metadata.labels: Invalid value: map[string]string{\"a\":\"b\"}: `selector` does not " \
           "match template `labels`" in err["message"]
    call(apiserver, "DELETE", path + "/rs1")


def test_discovery_documents(apiserver):
    agg = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    status, doc, headers = call(apiserver, "GET", "/apis", headers={"Accept": agg})
    assert headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    groups = {i["metadata"]["name"]: i for i in doc["items"]}
    assert set(groups) == {"apps", "coordination.k8s.io", "discovery.k8s.io"}
    deploy = next(r for r in groups["apps"]["versions"][0]["resources"] if r["resource"] == "deployments")
    assert deploy["shortNames"] == ["deploy"] and deploy["categories"] == ["all"]
    assert {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "verbs": ["get", "patch", "update"]} in deploy["subresources"]
    _, core, _ = call(apiserver, "GET", "/api/v1")
    names = {r["name"] for r in core["resources"]}
    assert {"pods", "pods/status", "pods/binding", "pods/log", "services", "namespaces/finalize"} <= names
    assert call(apiserver, "GET", "/api")[1]["versions"] == ["v1"]
    assert call(apiserver, "GET", "/apis/apps")[1]["preferredVersion"]["groupVersion"] == "apps/v1"
    with urllib.request.urlopen(apiserver.url + "/readyz?verbose", timeout=5) as r:
        assert r.read().decode().endswith("readyz check passed\n")


def test_future_resource_version_and_table_watch(apiserver):
    status, err, _ = call(apiserver, "GET", CMS + "?resourceVersion=99999999&resourceVersionMatch=NotOlderThan")
    assert status == 504 and err["message"].startswith("Too large resource version: 99999999, current: ")
    with urllib.request.urlopen(urllib.request.Request(
            apiserver.url + "/api/v1/namespaces?watch=true&timeoutSeconds=1",
            headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}), timeout=10) as r:
        events = [json.loads(line) for line in r.read().splitlines() if line.strip()]
    assert events and all(e["object"]["kind"] == "Table" and len(e["object"]["rows"]) == 1 for e in events)
    assert events[0]["object"]["columnDefinitions"]
    assert not events[-1]["object"]["columnDefinitions"]


def test_metrics(apiserver):
    call(apiserver, "GET", CMS)
    with urllib.request.urlopen(apiserver.url + "/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'apiserver_request_total{code="200",verb="GET"}' in text
    assert "kubesvc_apiserver_revision" in text


def test_concurrent_writers(apiserver):
    from concurrent.futures import ThreadPoolExecutor
    assert call(apiserver, "POST", CMS, cm("race"))[0] == 201
    _, obj, _ = call(apiserver, "GET", CMS + "/race")

    def put(i):
        o = json.loads(json.dumps(obj))
        o["data"] = {"winner": str(i)}
        return call(apiserver, "PUT", CMS + "/race", o)[0]

    with ThreadPoolExecutor(10) as ex:
        codes = list(ex.map(put, range(10)))
    assert sorted(codes) == [200] + [409] * 9

    def patch(i):
        return call(apiserver, "PATCH", CMS + "/race", {"metadata": {"labels": {f"l{i}": "x"}}},
                    {"Content-Type": "application/merge-patch+json"})[0]

    with ThreadPoolExecutor(10) as ex:
        codes = list(ex.map(patch, range(10)))
    assert codes == [200] * 10
    _, obj, _ = call(apiserver, "GET", CMS + "/race")
    assert set(obj["metadata"]["labels"]) == {f"l{i}" for i in range(10)}
    call(apiserver, "DELETE", CMS + "/race")


def test_malformed_protobuf_changes_nothing(apiserver):
    before = call(apiserver, "GET", CMS)[1]["metadata"]["resourceVersion"]
    status, err, _ = call(apiserver, "POST", CMS, b"k8s\x00\xff\xff\xff", {"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert status == 400 and err["reason"] == "BadRequest"
    assert call(apiserver, "GET", CMS)[1]["metadata"]["resourceVersion"] == before


def test_generate_name_and_finalizers(apiserver):
    status, obj, _ = call(apiserver, "POST", CMS, {"apiVersion": "v1", "kind": "ConfigMap",
                                                   "metadata": {"generateName": "gen-"}})
    assert status == 201 and obj["metadata"]["name"].startswith("gen-") and len(obj["metadata"]["name"]) == 9
    call(apiserver, "DELETE", CMS + "/" + obj["metadata"]["name"])
    held = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    assert call(apiserver, "POST", CMS, held)[0] == 201
    status, obj, _ = call(apiserver, "DELETE", CMS + "/held")
    assert status == 200 and obj["metadata"]["deletionTimestamp"]
    status, err, _ = call(apiserver, "POST", CMS, held)
    assert status == 409 and err["message"] == 'object is being deleted: configmaps "held" already exists'
    status, _, _ = call(apiserver, "PATCH", CMS + "/held", {"metadata": {"finalizers": None}},
                        {"Content-Type": "application/merge-patch+json"})
    assert status == 200
    assert call(apiserver, "GET", CMS + "/held")[0] == 404


def test_protobuf_only_accept_is_406(apiserver):
    status, err, _ = call(apiserver, "GET", CMS, headers={"Accept": "application/vnd.kubernetes.protobuf"})
    assert status == 406 and err["reason"] == "NotAcceptable"
    status, lst, headers = call(apiserver, "GET", CMS,
                                headers={"Accept": "application/vnd.kubernetes.protobuf, application/json"})
    assert status == 200 and headers["Content-Type"].startswith("application/json")


def test_abandoned_watch_is_dropped(apiserver):
    import socket
    import time as _time

    def watchers() -> float:
        with urllib.request.urlopen(apiserver.url + "/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("kubesvc_apiserver_watchers "):
                    return float(line.split()[1])
        return -1

    before = watchers()
    s = socket.create_connection(("127.0.0.1", apiserver.port))
    s.sendall(f"GET {CMS}?watch=true&resourceVersion=0&fieldSelector=metadata.name%3Dnone HTTP/1.1\r\n"
              f"Host: x\r\n\r\n".encode())
    s.recv(4096)
    assert watchers() == before + 1
    s.close()
    deadline = _time.monotonic() + 10
    while watchers() != before and _time.monotonic() < deadline:
        _time.sleep(0.3)
    assert watchers() == before


def test_kubectl_logs_proxied_to_the_node_agent(apiserver):
    """kubectl logs goes API server -> node's daemon endpoint (a stand-in agent on loopback)."""
    import http.server
    import threading
    seen = []

    class Agent(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            body = b"line 1\nline 2\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Agent)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "log-node"},
                "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                           "daemonEndpoints": {"kubeletEndpoint": {"Port": srv.server_address[1]}}}}
        assert call(apiserver, "POST", "/api/v1/nodes", node)[0] == 201
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "logged"},
               "spec": {"nodeName": "log-node", "containers": [{"name": "app", "image": "busybox"}]}}
        assert call(apiserver, "POST", PODS, pod)[0] == 201
        out = apiserver.kubectl("logs", "logged", "--tail=5").stdout
        assert out == "line 1\nline 2\n"
        assert seen[-1].startswith("/containerLogs/default/logged/app?") and "tailLines=5" in seen[-1]
    finally:
        srv.shutdown()
        call(apiserver, "DELETE", PODS + "/logged", {"gracePeriodSeconds": 0})
        call(apiserver, "DELETE", "/api/v1/nodes/log-node")


def test_terminating_namespace_refuses_new_content(apiserver):
    ns = "/api/v1/namespaces"
    assert call(apiserver, "POST", ns, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "term"}})[0] == 201
    held = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["example.com/x"]}}
    assert call(apiserver, "POST", ns + "/term/configmaps", held)[0] == 201
    status, obj, _ = call(apiserver, "DELETE", ns + "/term")
    assert status == 200 and obj["status"]["phase"] == "Terminating"
    status, err, _ = call(apiserver, "POST", ns + "/term/configmaps", cm("late"))
    assert status == 403 and err["reason"] == "Forbidden"
    assert err["message"] == "unable to create new content in namespace term because it is being terminated"
    # the held object blocks the namespace until its finalizer goes
    import time as _time
    _time.sleep(1.5)
    assert call(apiserver, "GET", ns + "/term")[0] == 200
    call(apiserver, "PATCH", ns + "/term/configmaps/held", {"metadata": {"finalizers": None}},
         {"Content-Type": "application/merge-patch+json"})
    deadline = _time.monotonic() + 10
    while call(apiserver, "GET", ns + "/term")[0] != 404:
        assert _time.monotonic() < deadline, "namespace was not removed"
        _time.sleep(0.3)


def test_namespaced_writes_need_a_namespace(apiserver):
    status, err, _ = call(apiserver, "POST", "/api/v1/configmaps", cm("nowhere"))
    assert status == 405 and err["reason"] == "MethodNotAllowed"
    status, err, _ = call(apiserver, "GET", "/api/v1/configmaps/nowhere")
    assert status == 404 and err["message"] == "the server could not find the requested resource"
    assert call(apiserver, "GET", "/api/v1/configmaps")[0] == 200


def test_bad_query_parameters_are_400(apiserver):
    assert call(apiserver, "GET", CMS + "?limit=abc")[0] == 400
    assert call(apiserver, "GET", CMS + "?resourceVersion=abc")[0] == 400
    assert call(apiserver, "GET", CMS + "?labelSelector=a%20in%20b")[0] == 400
    assert call(apiserver, "GET", CMS + "?continue=garbage")[0] == 400
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gp"},
           "spec": {"nodeName": "n", "containers": [{"name": "c", "image": "busybox"}]}}
    assert call(apiserver, "POST", PODS, pod)[0] == 201
    assert call(apiserver, "DELETE", PODS + "/gp?gracePeriodSeconds=abc")[0] == 400
    assert call(apiserver, "DELETE", PODS + "/gp", {"gracePeriodSeconds": "5"})[0] == 400
    assert call(apiserver, "DELETE", PODS + "/gp", {"gracePeriodSeconds": 0})[0] == 200


def test_zz_server_logged_no_tracebacks(apiserver):
    """Runs last in this module: nothing above made the server log an unexpected error."""
    log = (apiserver.data_dir / "apiserver.log").read_text()
    assert "Traceback" not in log, log[-3000:]
