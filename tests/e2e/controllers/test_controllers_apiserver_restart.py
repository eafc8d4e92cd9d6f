"""The API server restarts (killed, same data, same port) under running controllers:
their watches reconnect and relist, and changes made right after the restart still
reach workloads and endpoints, without restarting the controllers."""

from __future__ import annotations

import pytest

from tests.e2e.controllers.helpers import ControllersProcess, FakeKubelet, Kube, wait_for
from tests.lib.cluster import APIServer

NS = "apirestart"


@pytest.fixture()
def kube(tmp_path):
    server = APIServer(tmp_path / "apiserver").start()
    ctl = ControllersProcess(server).start()
    k = Kube(server)
    k.ctl = ctl
    k.kubectl("create", "namespace", NS)
    k.register_node("node01")
    try:
        yield k
    finally:
        ctl.stop()
        server.stop()


def ready_ips(kube: Kube, svc: str) -> set[str]:
    ep = kube.get(f"/api/v1/namespaces/{NS}/endpoints/{svc}") or {}
    return {a["ip"] for ss in ep.get("subsets") or [] for a in ss.get("addresses") or []}


def test_controllers_follow_changes_after_apiserver_restart(kube):
    kube.apply(f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {NS}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: c, image: nginx}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {NS}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80}}]
""")
    with FakeKubelet(kube, NS):
        wait_for(lambda: len(ready_ips(kube, "web")) == 2, 20, "2 ready endpoints before the restart")

        kube.server.restart(sig_kill=True)
        assert kube.ctl.proc.poll() is None, "the controllers exited when the API server went away:\n" \
            + kube.ctl.log()[-3000:]

        # A scale after the restart is seen through the re-established watches and acted on.
        kube.kubectl("scale", "deployment/web", "-n", NS, "--replicas=3")
        wait_for(lambda: len(ready_ips(kube, "web")) == 3, 30, "3 ready endpoints after the restart")
        wait_for(lambda: "3/3" in kube.kubectl("get", "deployment", "web", "-n", NS).stdout, 20,
                 "deployment READY 3/3 after the restart")

    # A pod turning unready leaves the ready addresses: the pod watch is live too.
    name = kube.pods(NS, "app=web")[0]["metadata"]["name"]
    ip = kube.pods(NS, "app=web")[0]["status"]["podIP"]
    kube.set_pod(NS, name, ip, ready=False)
    wait_for(lambda: ip not in ready_ips(kube, "web") and len(ready_ips(kube, "web")) == 2, 20,
             "the unready pod out of the ready addresses")
    assert kube.ctl.proc.poll() is None
