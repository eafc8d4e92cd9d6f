"""A node that stops heartbeating: Unknown, tainted, its pods out of the endpoints at once
and evicted later, their replacements on a healthy node (`--controllers '*,nodelifecycle'`)."""

from __future__ import annotations

import threading

import pytest

from tests.e2e.controllers.helpers import ControllersProcess, FakeKubelet, Kube, wait_for

NS = "nl"


class Heartbeats:
    """A kubelet that keeps posting Ready for some nodes."""

    def __init__(self, kube: Kube, nodes: list[str]):
        self.kube, self.nodes = kube, set(nodes)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for n in list(self.nodes):
                try:
                    self.kube.set_node_ready(n, True)
                except Exception:  # noqa: BLE001 - next beat
                    pass
            self._stop.wait(0.5)

    def __enter__(self) -> "Heartbeats":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join(5)


@pytest.fixture(scope="module")
def kube(apiserver):
    k = Kube(apiserver)
    k.ctl = ControllersProcess(apiserver, "--controllers", "*,nodelifecycle", "--node-monitor-grace-period", "2").start()
    k.kubectl("create", "namespace", NS)
    yield k
    k.ctl.stop()


def test_dead_node_pods_leave_endpoints_and_move(kube):
    with Heartbeats(kube, ["alive", "doomed"]) as beats:
        kube.register_node("doomed")
        kube.apply(f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app, namespace: {NS}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec:
      containers: [{{name: main, image: nginx}}]
      # the API server gives pods 300 s; users who want a faster fail-over say so
      tolerations:
      - {{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}}
---
apiVersion: v1
kind: Service
metadata: {{name: app, namespace: {NS}}}
spec:
  selector: {{app: app}}
  ports: [{{port: 80}}]
""")
        with FakeKubelet(kube, NS):
            kube.kubectl("rollout", "status", "deployment/app", "-n", NS, "--timeout=15s")
            first = kube.pods(NS, "app=app")[0]["metadata"]["name"]
            assert kube.get(f"/api/v1/namespaces/{NS}/pods/{first}")["spec"]["nodeName"] == "doomed"
            kube.register_node("alive")
            # the doomed node's kubelet dies
            beats.nodes.discard("doomed")

            def unknown():
                n = kube.get("/api/v1/nodes/doomed")
                ready = [c for c in n["status"]["conditions"] if c["type"] == "Ready"][0]
                return ready["status"] == "Unknown" and ready
            ready = wait_for(unknown, 10, "Ready=Unknown")
            assert ready["reason"] == "NodeStatusUnknown"
            assert ready["message"] == "Kubelet stopped posting node status."
            out = kube.kubectl("get", "node", "doomed").stdout
            assert "NotReady" in out
            taints = wait_for(lambda: kube.get("/api/v1/nodes/doomed")["spec"].get("taints"), 10, "taints")
            assert {(t["key"], t["effect"]) for t in taints} == {
                ("node.kubernetes.io/unreachable", "NoSchedule"), ("node.kubernetes.io/unreachable", "NoExecute")}
            # its pod leaves the service's ready endpoints straight away
            wait_for(lambda: not any(e["conditions"].get("ready") for s in kube.items(
                f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices?labelSelector=kubernetes.io/service-name=app")
                for e in s.get("endpoints") or [] if e["targetRef"]["name"] == first), 5, "pod not ready")
            # evicted after the timeout; the replacement runs on the healthy node
            wait_for(lambda: kube.get(f"/api/v1/namespaces/{NS}/pods/{first}") is None
                     or kube.get(f"/api/v1/namespaces/{NS}/pods/{first}")["metadata"].get("deletionTimestamp"),
                     10, "evicted")

            def replaced():
                return [p for p in kube.pods(NS, "app=app") if not p["metadata"].get("deletionTimestamp")
                        and p["spec"].get("nodeName") == "alive" and p.get("status", {}).get("podIP")]
            wait_for(replaced, 10, "replacement on the healthy node")
            assert "TaintManagerEviction" in kube.kubectl("get", "events", "-n", NS).stdout
            # the evicted pod stays Terminating (its kubelet is gone) until the node is deleted
            kube.kubectl("delete", "node", "doomed")
            wait_for(lambda: kube.get(f"/api/v1/namespaces/{NS}/pods/{first}") is None, 10, "orphan collected")
