"""Deployments -> ReplicaSets -> Pods, scheduling and node IPAM, driven with the real kubectl
against the real API server; the test plays the kubelet."""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.controllers.helpers import ControllersProcess, FakeKubelet, Kube, wait_for

SAFE = "[bcdfghjklmnpqrstvwxz2456789]"


@pytest.fixture(scope="module")
def kube(apiserver):
    ctl = ControllersProcess(apiserver).start()
    k = Kube(apiserver)
    k.ctl = ctl
    for n in ("node01", "node02"):
        k.register_node(n)
    yield k
    ctl.stop()


def deployment(name: str, ns: str, replicas: int, image: str = "nginx:1.25", extra_spec: str = "") -> str:
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
{extra_spec}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: main
        image: {image}
        ports: [{{name: http, containerPort: 80}}]
"""


def test_nodes_get_pod_cidrs(kube):
    cidrs = wait_for(lambda: [n["spec"].get("podCIDR") for n in kube.items("/api/v1/nodes")
                              if n["metadata"]["name"] in ("node01", "node02")] or None, 5)
    wait_for(lambda: all(kube.get(f"/api/v1/nodes/{n}")["spec"].get("podCIDR") for n in ("node01", "node02")),
             5, "podCIDRs")
    cidrs = {n: kube.get(f"/api/v1/nodes/{n}")["spec"]["podCIDR"] for n in ("node01", "node02")}
    assert sorted(cidrs.values()) == ["10.244.0.0/24", "10.244.1.0/24"]
    out = kube.kubectl("get", "nodes", "-o", "custom-columns=NAME:.metadata.name,CIDR:.spec.podCIDRs[0]").stdout
    assert re.search(r"node01\s+10\.244\.[01]\.0/24", out)


def test_deployment_replicasets_pods_and_scheduling(kube):
    kube.kubectl("create", "namespace", "wl")
    kube.apply(deployment("myapp-deployment", "wl", 3))
    pods = wait_for(lambda: len(kube.pods("wl")) == 3 and all(p["spec"].get("nodeName") for p in kube.pods("wl"))
                    and kube.pods("wl"), 10, "3 scheduled pods")
    rs = kube.items("/apis/apps/v1/namespaces/wl/replicasets")
    assert len(rs) == 1
    rs = rs[0]
    h = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"myapp-deployment-{h}" and re.fullmatch(f"{SAFE}{{1,10}}", h)
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    ref = rs["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["controller"], ref["blockOwnerDeletion"]) == \
        ("Deployment", "myapp-deployment", True, True)
    for p in pods:
        assert re.fullmatch(f"myapp-deployment-{h}-{SAFE}{{5}}", p["metadata"]["name"])
        assert p["metadata"]["labels"] == {"app": "myapp-deployment", "pod-template-hash": h}
        assert p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    # fewest pods first: 3 pods over 2 nodes -> 2 + 1
    nodes = sorted(p["spec"]["nodeName"] for p in pods)
    assert nodes in (["node01", "node01", "node02"], ["node01", "node02", "node02"])
    events = kube.kubectl("get", "events", "-n", "wl").stdout
    assert "Successfully assigned wl/myapp-deployment-" in events
    assert "Created pod: myapp-deployment-" in events
    assert f"Scaled up replica set myapp-deployment-{h} from 0 to 3" in events

    with FakeKubelet(kube, "wl"):
        kube.kubectl("rollout", "status", "deployment/myapp-deployment", "-n", "wl", "--timeout=15s")
    out = kube.kubectl("get", "deployment", "myapp-deployment", "-n", "wl").stdout
    assert re.search(r"myapp-deployment\s+3/3\s+3\s+3", out), out
    d = kube.get("/apis/apps/v1/namespaces/wl/deployments/myapp-deployment")
    conds = {c["type"]: c for c in d["status"]["conditions"]}
    assert conds["Available"]["status"] == "True"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"


def test_scale_up_and_down(kube):
    kube.kubectl("scale", "deployment/myapp-deployment", "-n", "wl", "--replicas=5")
    with FakeKubelet(kube, "wl"):
        wait_for(lambda: len([p for p in kube.pods("wl") if not p["metadata"].get("deletionTimestamp")]) == 5,
                 10, "5 pods")
        kube.kubectl("scale", "deployment/myapp-deployment", "-n", "wl", "--replicas=2")
        wait_for(lambda: len([p for p in kube.pods("wl") if not p["metadata"].get("deletionTimestamp")]) == 2,
                 10, "2 pods")
        kube.kubectl("rollout", "status", "deployment/myapp-deployment", "-n", "wl", "--timeout=15s")
    assert "Scaled down replica set" in kube.kubectl("describe", "deployment", "myapp-deployment", "-n", "wl").stdout


def test_rolling_update_keeps_availability(kube):
    kube.kubectl("scale", "deployment/myapp-deployment", "-n", "wl", "--replicas=4")
    with FakeKubelet(kube, "wl"):
        kube.kubectl("rollout", "status", "deployment/myapp-deployment", "-n", "wl", "--timeout=15s")
    # maxUnavailable 25% of 4 = 1: at least 3 ready pods at every moment of the rollout
    min_ready = 99
    with FakeKubelet(kube, "wl", delay=0.2):
        kube.kubectl("set", "image", "deployment/myapp-deployment", "-n", "wl", "main=nginx:1.26")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pods = kube.pods("wl")
            ready = [p for p in pods if not p["metadata"].get("deletionTimestamp") and any(
                c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))]
            min_ready = min(min_ready, len(ready))
            d = kube.get("/apis/apps/v1/namespaces/wl/deployments/myapp-deployment")
            st = d.get("status", {})
            if d["metadata"]["annotations"].get("deployment.kubernetes.io/revision") == "2" and \
                    st.get("updatedReplicas") == 4 and st.get("availableReplicas") == 4 and st.get("replicas") == 4:
                break
            time.sleep(0.05)
        kube.kubectl("rollout", "status", "deployment/myapp-deployment", "-n", "wl", "--timeout=15s")
    assert min_ready >= 3, min_ready
    rss = {r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: r
           for r in kube.items("/apis/apps/v1/namespaces/wl/replicasets")}
    assert rss["1"]["spec"]["replicas"] == 0 and rss["2"]["spec"]["replicas"] == 4
    kube.kubectl("annotate", "deployment/myapp-deployment", "-n", "wl", "kubernetes.io/change-cause=nginx 1.26")
    wait_for(lambda: re.search(r"^2\s+nginx 1\.26$", kube.kubectl(
        "rollout", "history", "deployment/myapp-deployment", "-n", "wl").stdout, re.M), 5, "change-cause")
    history = kube.kubectl("rollout", "history", "deployment/myapp-deployment", "-n", "wl").stdout
    assert re.search(r"^1\s", history, re.M) and re.search(r"^2\s", history, re.M)
    # undo goes back to the first template: its ReplicaSet becomes revision 3
    with FakeKubelet(kube, "wl"):
        kube.kubectl("rollout", "undo", "deployment/myapp-deployment", "-n", "wl")
        kube.kubectl("rollout", "status", "deployment/myapp-deployment", "-n", "wl", "--timeout=20s")
    rs1 = kube.get(f"/apis/apps/v1/namespaces/wl/replicasets/{rss['1']['metadata']['name']}")
    assert rs1["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert rs1["spec"]["replicas"] == 4


def test_recreate_strategy(kube):
    kube.apply(deployment("rec", "wl", 2, extra_spec="  strategy: {type: Recreate}"))
    with FakeKubelet(kube, "wl"):
        kube.kubectl("rollout", "status", "deployment/rec", "-n", "wl", "--timeout=15s")
        kube.kubectl("set", "image", "deployment/rec", "-n", "wl", "main=nginx:1.26")
        # the old pods are terminating: play the kubelet finishing them
        def finish_terminating():
            for p in kube.pods("wl", "app=rec"):
                if p["metadata"].get("deletionTimestamp"):
                    kube.request("DELETE", f"/api/v1/namespaces/wl/pods/{p['metadata']['name']}",
                                 {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
            d = kube.get("/apis/apps/v1/namespaces/wl/deployments/rec")["status"]
            return d.get("updatedReplicas") == 2 and d.get("availableReplicas") == 2 and d.get("replicas") == 2
        wait_for(finish_terminating, 20, "recreate rollout")


def test_deleting_deployment_collects_replicasets_and_pods(kube):
    kube.kubectl("delete", "deployment", "myapp-deployment", "-n", "wl", "--wait=false")
    wait_for(lambda: not [r for r in kube.items("/apis/apps/v1/namespaces/wl/replicasets")
                          if r["metadata"]["name"].startswith("myapp-deployment-")], 15, "replicasets collected")

    def pods_gone():
        pods = [p for p in kube.pods("wl", "app=myapp-deployment")]
        for p in pods:  # kubelet part: finish graceful deletions
            if p["metadata"].get("deletionTimestamp"):
                kube.request("DELETE", f"/api/v1/namespaces/wl/pods/{p['metadata']['name']}",
                             {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
        return not pods
    wait_for(pods_gone, 15, "pods collected")


def test_unschedulable_pod_gets_condition_and_event(kube):
    kube.apply("""
apiVersion: v1
kind: Pod
metadata: {name: picky, namespace: wl}
spec:
  nodeSelector: {disktype: ssd}
  containers: [{name: c, image: nginx}]
""")
    msg = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."

    def condition():
        p = kube.get("/api/v1/namespaces/wl/pods/picky")
        return [c for c in p.get("status", {}).get("conditions", [])
                if c["type"] == "PodScheduled" and c["status"] == "False" and c["reason"] == "Unschedulable"]
    cond = wait_for(condition, 10, "PodScheduled=False")
    assert cond[0]["message"] == msg
    wait_for(lambda: msg in kube.kubectl("describe", "pod", "picky", "-n", "wl").stdout, 10, "event")
    assert "FailedScheduling" in kube.kubectl("get", "events", "-n", "wl",
                                              "--field-selector", "involvedObject.name=picky").stdout
    # a node that fits appears: the pod is bound to it
    kube.register_node("node03", labels={"disktype": "ssd"})
    wait_for(lambda: kube.get("/api/v1/namespaces/wl/pods/picky")["spec"].get("nodeName") == "node03", 5,
             "bound to node03")


def test_progress_deadline_exceeded(kube):
    # no kubelet: the pods never get ready, so the rollout stops progressing
    kube.apply(deployment("stuck", "wl", 2, extra_spec="  progressDeadlineSeconds: 2"))

    def exceeded():
        d = kube.get("/apis/apps/v1/namespaces/wl/deployments/stuck")
        return [c for c in d.get("status", {}).get("conditions", [])
                if c["type"] == "Progressing" and c["status"] == "False"]
    cond = wait_for(exceeded, 10, "ProgressDeadlineExceeded")[0]
    assert cond["reason"] == "ProgressDeadlineExceeded"
    assert re.fullmatch(r'ReplicaSet "stuck-\w+" has timed out progressing\.', cond["message"])
    p = kube.kubectl("rollout", "status", "deployment/stuck", "-n", "wl", "--timeout=5s", check=False)
    assert p.returncode != 0 and "exceeded its progress deadline" in p.stderr
    kube.kubectl("delete", "deployment", "stuck", "-n", "wl")


def test_relabelled_pod_is_released_and_replaced_then_adopted_back(kube):
    kube.apply(deployment("lbl", "wl", 2))
    pods = wait_for(lambda: len(kube.pods("wl", "app=lbl")) == 2 and kube.pods("wl", "app=lbl"), 10, "2 pods")
    victim = pods[0]["metadata"]["name"]
    h = pods[0]["metadata"]["labels"]["pod-template-hash"]
    kube.kubectl("label", "pod", victim, "-n", "wl", "app=debug", "--overwrite")
    # released (no ownerReference any more) and replaced
    wait_for(lambda: not kube.get(f"/api/v1/namespaces/wl/pods/{victim}")["metadata"].get("ownerReferences"),
             10, "pod released")
    wait_for(lambda: len(kube.pods("wl", "app=lbl")) == 2, 10, "replacement")
    # labelled back: the ReplicaSet adopts it and deletes one surplus pod
    kube.kubectl("label", "pod", victim, "-n", "wl", "app=lbl", "--overwrite")

    def adopted():
        refs = kube.get(f"/api/v1/namespaces/wl/pods/{victim}")["metadata"].get("ownerReferences") or []
        return refs and refs[0]["name"] == f"lbl-{h}" and refs[0]["controller"]
    wait_for(adopted, 10, "pod adopted")
    wait_for(lambda: len([p for p in kube.pods("wl", "app=lbl") if not p["metadata"].get("deletionTimestamp")]) == 2,
             10, "back to 2 pods")
    kube.kubectl("delete", "deployment", "lbl", "-n", "wl")


def test_min_ready_seconds_pause_and_restart(kube):
    kube.apply(deployment("slow", "wl", 1, extra_spec="  minReadySeconds: 2"))
    with FakeKubelet(kube, "wl"):
        rs = wait_for(lambda: [r for r in kube.items("/apis/apps/v1/namespaces/wl/replicasets")
                               if r["metadata"]["name"].startswith("slow-")
                               and r.get("status", {}).get("readyReplicas") == 1], 10, "ready")[0]
        # ready, but not available until it has been ready for minReadySeconds
        assert not rs["status"].get("availableReplicas")
        wait_for(lambda: kube.get("/apis/apps/v1/namespaces/wl/deployments/slow")
                 .get("status", {}).get("availableReplicas") == 1, 10, "available after 2 s")
        # paused: a template change makes no new ReplicaSet until resumed
        kube.kubectl("rollout", "pause", "deployment/slow", "-n", "wl")
        kube.kubectl("set", "image", "deployment/slow", "-n", "wl", "main=nginx:1.26")
        time.sleep(1.0)
        assert len([r for r in kube.items("/apis/apps/v1/namespaces/wl/replicasets")
                    if r["metadata"]["name"].startswith("slow-")]) == 1
        conds = {c["type"]: c for c in kube.get("/apis/apps/v1/namespaces/wl/deployments/slow")["status"]["conditions"]}
        assert conds["Progressing"]["reason"] == "DeploymentPaused"
        kube.kubectl("rollout", "resume", "deployment/slow", "-n", "wl")
        kube.kubectl("rollout", "status", "deployment/slow", "-n", "wl", "--timeout=30s")
        # rollout restart: a new template (restartedAt annotation), a new revision
        kube.kubectl("rollout", "restart", "deployment/slow", "-n", "wl")
        wait_for(lambda: kube.get("/apis/apps/v1/namespaces/wl/deployments/slow")["metadata"]["annotations"]
                 .get("deployment.kubernetes.io/revision") == "3", 10, "revision 3")
        kube.kubectl("rollout", "status", "deployment/slow", "-n", "wl", "--timeout=30s")
    kube.kubectl("delete", "deployment", "slow", "-n", "wl")
