"""Endpoints and EndpointSlices following pods, driven with the real kubectl against the
real API server; the test plays the kubelet by patching pod status."""

from __future__ import annotations

import time

import pytest

from tests.e2e.controllers.helpers import ControllersProcess, Kube, wait_for

NS = "ep"


@pytest.fixture(scope="module")
def kube(apiserver):
    ctl = ControllersProcess(apiserver, "--controllers", "endpoints,endpointslices").start()
    k = Kube(apiserver)
    k.ctl = ctl
    k.kubectl("create", "namespace", NS)
    yield k
    ctl.stop()


def make_pod(kube: Kube, name: str, labels: dict, ports: list[dict] | None = None, node: str = "node01",
             hostname: str | None = None, subdomain: str | None = None) -> None:
    spec: dict = {"nodeName": node, "containers": [{"name": "c", "image": "nginx", "ports": ports or []}]}
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    kube.request("POST", f"/api/v1/namespaces/{NS}/pods",
                 {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec})


def slices(kube: Kube, svc: str) -> list[dict]:
    return kube.items(f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"
                      f"?labelSelector=kubernetes.io/service-name={svc}")


def slice_endpoints(kube: Kube, svc: str) -> dict[str, dict]:
    out = {}
    for s in slices(kube, svc):
        for e in s.get("endpoints") or []:
            out[e["targetRef"]["name"]] = {**e, "ports": s.get("ports")}
    return out


def endpoints(kube: Kube, svc: str) -> dict:
    ep = kube.get(f"/api/v1/namespaces/{NS}/endpoints/{svc}") or {}
    ready, not_ready = {}, {}
    for ss in ep.get("subsets") or []:
        ports = sorted((p.get("name", ""), p["port"]) for p in ss.get("ports") or [])
        for a in ss.get("addresses") or []:
            ready[a["targetRef"]["name"]] = (a["ip"], ports, a.get("hostname"), a.get("nodeName"))
        for a in ss.get("notReadyAddresses") or []:
            not_ready[a["targetRef"]["name"]] = (a["ip"], ports, a.get("hostname"), a.get("nodeName"))
    return {"ready": ready, "notReady": not_ready}


def test_readiness_changes_reach_endpoints_and_slices(kube):
    kube.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}, labels: {{team: blue}}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
""")
    for i in range(3):
        make_pod(kube, f"web-{i}", {"app": "web"})
        kube.set_pod(NS, f"web-{i}", f"10.244.0.{10 + i}", ready=False)
    wait_for(lambda: len(endpoints(kube, "web")["notReady"]) == 3, 10, "3 not-ready addresses")
    eps = slice_endpoints(kube, "web")
    assert {n: e["conditions"] for n, e in eps.items()} == {
        f"web-{i}": {"ready": False, "serving": False, "terminating": False} for i in range(3)}
    s = slices(kube, "web")[0]
    assert s["metadata"]["labels"] == {"team": "blue", "kubernetes.io/service-name": "web",
                                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    assert s["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert eps["web-0"]["nodeName"] == "node01" and eps["web-0"]["addresses"] == ["10.244.0.10"]

    t0 = time.monotonic()
    kube.set_pod(NS, "web-1", "10.244.0.11", ready=True)
    wait_for(lambda: "web-1" in endpoints(kube, "web")["ready"]
             and slice_endpoints(kube, "web")["web-1"]["conditions"]["ready"], 3, "web-1 ready")
    took = time.monotonic() - t0
    print(f"readiness -> endpoints + slice: {took * 1000:.0f} ms")
    out = kube.kubectl("get", "endpoints", "web", "-n", NS).stdout
    assert "10.244.0.11:8080" in out and "10.244.0.10" not in out
    kube.set_pod(NS, "web-1", "10.244.0.11", ready=False)
    wait_for(lambda: "web-1" in endpoints(kube, "web")["notReady"], 10, "web-1 not ready again")


def test_terminating_pods(kube):
    for i in range(3):
        kube.set_pod(NS, f"web-{i}", f"10.244.0.{10 + i}", ready=True)
    wait_for(lambda: len(endpoints(kube, "web")["ready"]) == 3, 10, "3 ready")
    kube.kubectl("delete", "pod", "web-2", "-n", NS, "--wait=false")  # bound: graceful
    wait_for(lambda: slice_endpoints(kube, "web")["web-2"]["conditions"] ==
             {"ready": False, "serving": True, "terminating": True}, 5, "terminating endpoint")
    ep = endpoints(kube, "web")
    assert "web-2" not in ep["ready"] and "web-2" not in ep["notReady"]
    kube.request("DELETE", f"/api/v1/namespaces/{NS}/pods/web-2",
                 {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
    wait_for(lambda: "web-2" not in slice_endpoints(kube, "web"), 10, "gone")


def test_named_ports_resolved_per_pod(kube):
    kube.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: named, namespace: {NS}}}
spec:
  selector: {{app: named}}
  ports: [{{name: web, port: 80, targetPort: http}}]
""")
    make_pod(kube, "named-a", {"app": "named"}, [{"name": "http", "containerPort": 8080}])
    make_pod(kube, "named-b", {"app": "named"}, [{"name": "http", "containerPort": 9090}])
    make_pod(kube, "named-c", {"app": "named"}, [{"name": "metrics", "containerPort": 9100}])
    for i, n in enumerate(("named-a", "named-b", "named-c")):
        kube.set_pod(NS, n, f"10.244.1.{10 + i}", ready=True)
    wait_for(lambda: len(endpoints(kube, "named")["ready"]) == 2, 10, "2 addresses")
    ep = endpoints(kube, "named")["ready"]
    assert ep["named-a"][1] == [("web", 8080)] and ep["named-b"][1] == [("web", 9090)]
    eps = wait_for(lambda: len(slice_endpoints(kube, "named")) == 2 and slice_endpoints(kube, "named"), 5)
    assert eps["named-a"]["ports"] == [{"name": "web", "port": 8080, "protocol": "TCP"}]
    assert eps["named-b"]["ports"] == [{"name": "web", "port": 9090, "protocol": "TCP"}]
    assert len(slices(kube, "named")) == 2  # one slice per port set
    out = kube.kubectl("get", "endpoints", "named", "-n", NS).stdout
    assert "10.244.1.10:8080" in out and "10.244.1.11:9090" in out and "10.244.1.12" not in out


def test_publish_not_ready_addresses_and_hostnames(kube):
    kube.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: db, namespace: {NS}}}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {{app: db}}
  ports: [{{port: 5432}}]
""")
    make_pod(kube, "db-0", {"app": "db"}, hostname="db-0", subdomain="db")
    kube.set_pod(NS, "db-0", "10.244.2.10", ready=False)
    ep = wait_for(lambda: endpoints(kube, "db")["ready"].get("db-0"), 10, "published not-ready pod")
    assert ep[0] == "10.244.2.10" and ep[2] == "db-0"
    e = wait_for(lambda: slice_endpoints(kube, "db").get("db-0"), 5)
    assert e["conditions"] == {"ready": True, "serving": False, "terminating": False}
    assert e["hostname"] == "db-0"
    s = slices(kube, "db")[0]
    assert s["metadata"]["labels"]["service.kubernetes.io/headless"] == ""


def test_many_endpoints_split_into_slices_of_100(kube):
    kube.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: big, namespace: {NS}}}
spec:
  selector: {{app: big}}
  ports: [{{port: 80}}]
""")
    for i in range(130):
        make_pod(kube, f"big-{i}", {"app": "big"})
        kube.set_pod(NS, f"big-{i}", f"10.244.{3 + i // 200}.{i % 200 + 1}", ready=True)
    wait_for(lambda: len(slice_endpoints(kube, "big")) == 130, 15, "130 endpoints")
    sizes = sorted(len(s.get("endpoints") or []) for s in slices(kube, "big"))
    assert sizes == [30, 100]
    out = kube.kubectl("get", "endpointslices", "-n", NS, "-l", "kubernetes.io/service-name=big").stdout
    assert out.count("big-") == 2


def test_selectorless_service_left_to_the_user(kube):
    kube.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: external-db, namespace: {NS}}}
spec:
  ports: [{{port: 3306}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: external-db, namespace: {NS}}}
subsets:
- addresses: [{{ip: 192.0.2.10}}]
  ports: [{{port: 3306}}]
""")
    time.sleep(1.0)
    ep = kube.get(f"/api/v1/namespaces/{NS}/endpoints/external-db")
    assert ep["subsets"][0]["addresses"] == [{"ip": "192.0.2.10"}]
    assert slices(kube, "external-db") == []


def test_external_name_service_gets_no_endpoints(kube):
    # As kube (issues.k8s.io/105986): an ExternalName service gets neither Endpoints nor
    # slices from the controllers, even with a selector; a ClusterIP twin with the same
    # selector shows the pod was seen.
    make_pod(kube, "ext-0", {"app": "ext"})
    kube.set_pod(NS, "ext-0", "10.244.8.8", ready=True)
    kube.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: ext-name, namespace: {NS}}}
spec:
  type: ExternalName
  externalName: db.example.com
  selector: {{app: ext}}
""")
    kube.apply(f"""
apiVersion: v1
kind: Service
metadata: {{name: ext-twin, namespace: {NS}}}
spec:
  selector: {{app: ext}}
  ports: [{{port: 80}}]
""")
    wait_for(lambda: set(endpoints(kube, "ext-twin")["ready"]) == {"ext-0"}, 10, "the twin's endpoints")
    assert kube.get(f"/api/v1/namespaces/{NS}/endpoints/ext-name") is None
    assert slices(kube, "ext-name") == []


def test_removing_the_service_removes_endpoints_and_slices(kube):
    kube.kubectl("delete", "service", "named", "-n", NS)
    wait_for(lambda: kube.get(f"/api/v1/namespaces/{NS}/endpoints/named") is None and not slices(kube, "named"),
             10, "endpoints and slices gone")


def test_service_changes_move_endpoints(kube):
    # the service's port changes: the slice is rewritten in place, Endpoints follow
    kube.kubectl("patch", "svc", "web", "-n", NS, "--type=json",
                 "-p", '[{"op":"replace","path":"/spec/ports/0/targetPort","value":9000}]')
    wait_for(lambda: all(e["ports"] == [{"name": "http", "port": 9000, "protocol": "TCP"}]
                         for e in slice_endpoints(kube, "web").values()) and
             all(v[1] == [("http", 9000)] for v in endpoints(kube, "web")["ready"].values()), 5, "port 9000")
    # the selector changes: the old pods leave, the selected ones arrive
    make_pod(kube, "other-0", {"app": "other"})
    kube.set_pod(NS, "other-0", "10.244.9.9", ready=True)
    kube.kubectl("patch", "svc", "web", "-n", NS, "--type=merge", "-p", '{"spec":{"selector":{"app":"other"}}}')
    wait_for(lambda: set(slice_endpoints(kube, "web")) == {"other-0"}
             and set(endpoints(kube, "web")["ready"]) == {"other-0"}, 5, "selector followed")
    # a pod's labels change: it leaves the service
    kube.kubectl("label", "pod", "other-0", "-n", NS, "app=gone", "--overwrite")
    wait_for(lambda: not slice_endpoints(kube, "web") and not endpoints(kube, "web")["ready"], 10, "pod left")
    assert len(slices(kube, "web")) == 1  # the placeholder
