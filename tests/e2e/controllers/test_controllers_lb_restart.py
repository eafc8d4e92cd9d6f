"""LoadBalancer addresses from --lb-pool, and a controllers restart that changes nothing.

The pool addresses are only ever written into Service status here: no traffic is sent.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest

from tests.e2e.controllers.helpers import ControllersProcess, FakeKubelet, Kube, wait_for

NS = "lb"
POOL = "192.168.200.10-192.168.200.11"


@pytest.fixture(scope="module")
def kube(apiserver):
    k = Kube(apiserver)
    k.ctl = ControllersProcess(apiserver, "--lb-pool", POOL, via_kubeconfig=True).start()
    k.kubectl("create", "namespace", NS)
    yield k
    k.ctl.stop()


def lb_service(name: str, extra: str = "", annotations: str = "") -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {NS}{annotations}}}
spec:
  type: LoadBalancer
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8080}}]
{extra}
"""


def ingress(kube: Kube, name: str) -> list[str]:
    svc = kube.get(f"/api/v1/namespaces/{NS}/services/{name}") or {}
    return [i["ip"] for i in svc.get("status", {}).get("loadBalancer", {}).get("ingress") or []]


def test_addresses_assigned_pending_and_released(kube):
    kube.apply(lb_service("a"))
    assert wait_for(lambda: ingress(kube, "a"), 10, "a gets an address") == ["192.168.200.10"]
    kube.apply(lb_service("b", extra="  loadBalancerIP: 192.168.200.11"))
    assert wait_for(lambda: ingress(kube, "b"), 5) == ["192.168.200.11"]
    out = kube.kubectl("get", "svc", "a", "b", "-n", NS).stdout
    assert "192.168.200.10" in out and "192.168.200.11" in out
    # the pool is exhausted: c stays <pending>, with an event saying why
    kube.apply(lb_service("c"))
    wait_for(lambda: "no available IPs" in kube.kubectl("describe", "svc", "c", "-n", NS).stdout, 10, "event")
    out = kube.kubectl("get", "svc", "c", "-n", NS).stdout
    assert "<pending>" in out
    assert "AllocationFailed" in kube.kubectl("get", "events", "-n", NS).stdout
    # the same event again is aggregated: one Event object whose count goes up
    for i in range(2):
        kube.kubectl("annotate", "svc", "c", "-n", NS, f"touch={i}", "--overwrite")

    def failed_events():
        evs = [e for e in kube.items(f"/api/v1/namespaces/{NS}/events")
               if e["involvedObject"]["name"] == "c" and e["reason"] == "AllocationFailed"]
        return len(evs) == 1 and evs[0]["count"] >= 3 and evs[0]
    ev = wait_for(failed_events, 10, "aggregated event")
    assert ev["type"] == "Warning" and ev["source"]["component"] == "service-controller"
    assert ev["involvedObject"]["kind"] == "Service" and ev["firstTimestamp"] and ev["lastTimestamp"]
    # deleting a frees its address for c
    kube.kubectl("delete", "svc", "a", "-n", NS)
    assert wait_for(lambda: ingress(kube, "c"), 10, "c gets a's address") == ["192.168.200.10"]
    # b turns into a ClusterIP service: its address is released and its status cleared
    kube.kubectl("patch", "svc", "b", "-n", NS, "--type=merge",
                 "-p", '{"spec":{"type":"ClusterIP","loadBalancerIP":null}}')
    wait_for(lambda: ingress(kube, "b") == [], 10, "b's status cleared")
    # the annotation asks for a specific address
    kube.apply(lb_service("d", annotations=", annotations: {kubesvc.io/loadBalancerIPs: 192.168.200.11}"))
    assert wait_for(lambda: ingress(kube, "d"), 5) == ["192.168.200.11"]
    # an address outside the pool is refused
    kube.apply(lb_service("e", extra="  loadBalancerIP: 10.9.9.9"))
    wait_for(lambda: "10.9.9.9 is not allowed in config" in kube.kubectl("describe", "svc", "e", "-n", NS).stdout,
             5, "refusal event")
    assert ingress(kube, "e") == []


def _watch_counts(kube: Kube, paths: list[str], stop: threading.Event, counts: dict) -> list[threading.Thread]:
    threads = []
    for path in paths:
        listing = kube.get(path)
        rv = listing["metadata"]["resourceVersion"]

        def run(path=path, rv=rv):
            url = f"{kube.server.url}{path}?watch=true&resourceVersion={rv}&timeoutSeconds=30"
            with urllib.request.urlopen(url, timeout=35) as r:
                while not stop.is_set():
                    line = r.readline()
                    if not line:
                        return
                    ev = json.loads(line)
                    if ev["type"] != "BOOKMARK":
                        obj = ev["object"]["metadata"]
                        counts.setdefault(path, []).append((ev["type"], obj.get("namespace"), obj["name"]))
        t = threading.Thread(target=run, daemon=True)
        t.start()
        threads.append(t)
    return threads


def test_restart_makes_no_writes(kube):
    # a world with everything in it: nodes, a deployment with ready pods, services with
    # endpoints, LB addresses, a pending LB service, an unschedulable pod
    for n in ("node01", "node02"):
        kube.register_node(n)
    kube.apply(f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: c, namespace: {NS}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: c}}}}
  template:
    metadata: {{labels: {{app: c}}}}
    spec: {{containers: [{{name: main, image: nginx}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: picky, namespace: {NS}}}
spec:
  nodeSelector: {{disktype: ssd}}
  containers: [{{name: c, image: nginx}}]
""")
    kube.apply(lb_service("f"))
    with FakeKubelet(kube, NS):
        kube.kubectl("rollout", "status", "deployment/c", "-n", NS, "--timeout=15s")
    wait_for(lambda: all(kube.get(f"/api/v1/nodes/{n}")["spec"].get("podCIDR") for n in ("node01", "node02")), 5)
    wait_for(lambda: any(c["type"] == "PodScheduled" for c in
                         kube.get(f"/api/v1/namespaces/{NS}/pods/picky").get("status", {}).get("conditions", [])), 5)
    time.sleep(1.0)  # let the last status writes settle
    kube.ctl.stop()

    paths = ["/api/v1/pods", "/api/v1/services", "/api/v1/endpoints", "/api/v1/nodes",
             "/apis/discovery.k8s.io/v1/endpointslices", "/apis/apps/v1/deployments",
             "/apis/apps/v1/replicasets"]
    stop, counts = threading.Event(), {}
    _watch_counts(kube, paths, stop, counts)
    time.sleep(0.3)
    kube.ctl.start()
    time.sleep(3.0)
    quiet = {k: list(v) for k, v in counts.items()}
    # the watches do see writes, and the restarted controllers do react: a pod turns unready
    pod = kube.pods(NS, "app=c")[0]
    kube.set_pod(NS, pod["metadata"]["name"], pod["status"]["podIP"], ready=False)
    wait_for(lambda: counts.get("/apis/discovery.k8s.io/v1/endpointslices")
             and counts.get("/api/v1/endpoints"), 5, "endpoints rewritten after the change")
    stop.set()
    print("after the change:", counts)
    assert quiet == {}, f"writes after a restart with nothing to do: {quiet}"
