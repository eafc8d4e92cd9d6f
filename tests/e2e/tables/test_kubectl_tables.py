"""`kubectl get` prints kubesvc's server-side Tables exactly as it prints kube-apiserver's.

The real kubectl against a real kubesvc apiserver: headers, rows (AGE aside, as
it depends on the clock), -o wide, -A, and -w with --output-watch-events.
"""

from __future__ import annotations

import json
import re
import queue
import subprocess
import threading
import time

import pytest

from tests.lib.cluster import kubectl_path

from tests.e2e.tables.kubectl_get_output import parse, without

SEED_PODS = [  # kubectl get pods -o wide -l app=myapp, from the seed
    ("myapp-deployment-675558bfc5-q8gxv", "10.244.1.38", "node01"),
    ("myapp-deployment-675558bfc5-tdfk7", "10.244.2.30", "node02"),
    ("myapp-deployment-675558bfc5-zhn8b", "10.244.2.29", "node02"),
]


def _apply(apiserver, obj: dict) -> None:
    apiserver.kubectl("apply", "-f", "-", input=json.dumps(obj))


def _status(apiserver, kind: str, name: str, status: dict, ns: str | None = None) -> None:
    args = ["patch", kind, name, "--subresource=status", "--type=merge", "-p", json.dumps({"status": status})]
    if ns:
        args += ["-n", ns]
    apiserver.kubectl(*args)


def get(apiserver, *args: str) -> tuple[list[str], list[list[str]]]:
    return parse(apiserver.kubectl("get", *args).stdout)


@pytest.fixture(scope="module")
def seed_pods(apiserver):
    for name, ip, node in SEED_PODS:
        _apply(apiserver, {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": name, "namespace": "default",
                                        "labels": {"app": "myapp", "release": "canary"}},
                           "spec": {"nodeName": node, "containers": [{"name": "myapp", "image": "ikubernetes/myapp:v1"}]}})
        _status(apiserver, "pod", name, {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.168.1.10",
            "startTime": "2019-04-07T08:51:30Z",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "myapp", "ready": True, "restartCount": 0, "started": True,
                                   "image": "ikubernetes/myapp:v1", "imageID": "",
                                   "state": {"running": {"startedAt": "2019-04-07T08:51:31Z"}}}]})
    return SEED_PODS


def test_seed_pods_wide(apiserver, seed_pods):
    headers, rows = get(apiserver, "pods", "-o", "wide", "-l", "app=myapp")
    assert headers == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE",
                       "READINESS GATES"]
    assert without(headers, rows, "AGE") == [
        ["myapp-deployment-675558bfc5-q8gxv", "1/1", "Running", "0", "10.244.1.38", "node01", "<none>", "<none>"],
        ["myapp-deployment-675558bfc5-tdfk7", "1/1", "Running", "0", "10.244.2.30", "node02", "<none>", "<none>"],
        ["myapp-deployment-675558bfc5-zhn8b", "1/1", "Running", "0", "10.244.2.29", "node02", "<none>", "<none>"],
    ]
    narrow, _ = get(apiserver, "pods", "-l", "app=myapp")
    assert narrow == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]


def test_pod_statuses(apiserver):
    def pod(name: str, status: dict) -> None:
        _apply(apiserver, {"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": name, "namespace": "default", "labels": {"case": "status"}},
                           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        _status(apiserver, "pod", name, status)

    pod("creating", {"phase": "Pending", "containerStatuses": [
        {"name": "c", "ready": False, "restartCount": 0, "image": "busybox", "imageID": "",
         "state": {"waiting": {"reason": "ContainerCreating"}}}]})
    pod("crashing", {"phase": "Running", "containerStatuses": [
        {"name": "c", "ready": False, "restartCount": 3, "image": "busybox", "imageID": "",
         "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                      "finishedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 5))}}}]})
    pod("done", {"phase": "Succeeded", "containerStatuses": [
        {"name": "c", "ready": False, "restartCount": 0, "image": "busybox", "imageID": "",
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})
    headers, rows = get(apiserver, "pods", "-l", "case=status")
    cells = {r[0]: r[1:4] for r in rows}
    assert cells["creating"] == ["0/1", "ContainerCreating", "0"]
    assert cells["crashing"][:2] == ["0/1", "CrashLoopBackOff"]
    # The last restart was 5 s before the status was written; a loaded machine adds seconds.
    restarts = re.fullmatch(r"3 \((\d+)s ago\)", cells["crashing"][2])
    assert restarts and 5 <= int(restarts.group(1)) <= 60, cells["crashing"]
    assert cells["done"] == ["0/1", "Completed", "0"]


SEED_SERVICES = [
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "redis", "namespace": "default"},
     "spec": {"selector": {"app": "redis", "role": "logstor"}, "clusterIP": "10.97.97.97", "type": "ClusterIP",
              "ports": [{"port": 6379, "targetPort": 6379}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "myapp", "namespace": "default"},
     "spec": {"selector": {"app": "myapp", "release": "canary"}, "clusterIP": "10.99.99.99", "type": "NodePort",
              "ports": [{"port": 80, "targetPort": 80, "nodePort": 30080}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "myapp-svc-headless", "namespace": "default"},
     "spec": {"selector": {"app": "myapp", "release": "canary"}, "clusterIP": "None",
              "ports": [{"port": 80, "targetPort": 80}]}},
]


def test_seed_services(apiserver):
    for svc in SEED_SERVICES:
        _apply(apiserver, svc)
    headers, rows = get(apiserver, "svc")
    assert headers == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert without(headers, rows, "AGE") == [
        ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP"],
        ["myapp", "NodePort", "10.99.99.99", "<none>", "80:30080/TCP"],
        ["myapp-svc-headless", "ClusterIP", "None", "<none>", "80/TCP"],
        ["redis", "ClusterIP", "10.97.97.97", "<none>", "6379/TCP"],
    ]
    headers, rows = get(apiserver, "svc", "-n", "kube-system")
    assert without(headers, rows, "AGE") == [["kube-dns", "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP,9153/TCP"]]
    headers, rows = get(apiserver, "svc", "-o", "wide", "myapp", "redis")
    assert headers[-1] == "SELECTOR"
    assert [r[-1] for r in rows] == ["app=myapp,release=canary", "app=redis,role=logstor"]


def test_loadbalancer_and_externalname(apiserver):
    apiserver.kubectl("create", "service", "loadbalancer", "lb", "--tcp=80:8080")
    apiserver.kubectl("create", "service", "externalname", "ext", "--external-name=db.example.com")
    _, rows = get(apiserver, "svc", "lb", "ext")
    cells = {r[0]: r[1:5] for r in rows}
    assert cells["ext"] == ["ExternalName", "<none>", "db.example.com", "<none>"]
    assert cells["lb"][0] == "LoadBalancer" and cells["lb"][2] == "<pending>"
    assert cells["lb"][3].startswith("80:") and cells["lb"][3].endswith("/TCP")
    _status(apiserver, "svc", "lb", {"loadBalancer": {"ingress": [{"ip": "172.18.255.200"}]}})
    _, rows = get(apiserver, "svc", "lb")
    assert rows[0][3] == "172.18.255.200"


def test_endpoints_and_endpointslices(apiserver):
    _apply(apiserver, {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "many", "namespace": "default"},
                       "subsets": [{"addresses": [{"ip": "10.244.1.5"}, {"ip": "10.244.2.3"}, {"ip": "10.244.2.4"},
                                                  {"ip": "10.244.3.9"}], "ports": [{"port": 80}]}]})
    headers, rows = get(apiserver, "endpoints", "many")
    assert without(headers, rows, "AGE") == [["many", "10.244.1.5:80,10.244.2.3:80,10.244.2.4:80 + 1 more..."]]
    _apply(apiserver, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                       "metadata": {"name": "many-abc", "namespace": "default",
                                    "labels": {"kubernetes.io/service-name": "many"}},
                       "addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                       "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": True}},
                                     {"addresses": ["10.244.2.3"], "conditions": {"ready": False}}]})
    headers, rows = get(apiserver, "endpointslices", "many-abc")
    assert headers == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert without(headers, rows, "AGE") == [["many-abc", "IPv4", "80", "10.244.1.5,10.244.2.3"]]


TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}, {"name": "log", "image": "busybox"}]}}


def test_deployments_and_replicasets(apiserver):
    _apply(apiserver, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
                       "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE}})
    _status(apiserver, "deployment", "web", {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3,
                                             "availableReplicas": 2})
    headers, rows = get(apiserver, "deploy", "web", "-o", "wide")
    assert headers == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert without(headers, rows, "AGE") == [["web", "2/3", "3", "2", "web,log", "nginx:1.25,busybox", "app=web"]]
    _apply(apiserver, {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-5d8f", "namespace": "default"},
                       "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE}})
    headers, rows = get(apiserver, "rs", "web-5d8f", "-o", "wide")
    assert headers == ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert without(headers, rows, "AGE") == [["web-5d8f", "3", "0", "0", "web,log", "nginx:1.25,busybox", "app=web"]]


def test_nodes_wide(apiserver):
    _apply(apiserver, {"apiVersion": "v1", "kind": "Node",
                       "metadata": {"name": "node01", "labels": {"node-role.kubernetes.io/control-plane": ""}}})
    _status(apiserver, "node", "node01", {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready",
                        "lastHeartbeatTime": "2026-11-26T10:00:00Z", "lastTransitionTime": "2026-11-26T10:00:00Z"}],
        "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "node01"}],
        "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.1.0-18-amd64",
                     "osImage": "Debian GNU/Linux 12 (bookworm)", "containerRuntimeVersion": "kubesvc://0.1.0",
                     "kubeletVersion": "v1.32.0", "kubeProxyVersion": "", "operatingSystem": "linux",
                     "architecture": "amd64"}})
    headers, rows = get(apiserver, "nodes", "-o", "wide")
    assert headers == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE",
                       "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert ["node01", "Ready", "control-plane", "v1.32.0", "192.168.1.10", "<none>", "Debian GNU/Linux 12 (bookworm)",
            "6.1.0-18-amd64", "kubesvc://0.1.0"] in without(headers, rows, "AGE")


def test_namespaces(apiserver):
    headers, rows = get(apiserver, "namespaces")
    assert headers == ["NAME", "STATUS", "AGE"]
    names = [r[0] for r in rows]
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= set(names)
    phase = json.loads(apiserver.kubectl("get", "ns", "default", "-o", "json").stdout).get("status", {}).get("phase")
    if not phase:
        pytest.skip("the API server does not set namespace status.phase yet")
    assert dict((r[0], r[1]) for r in rows)["default"] == phase == "Active"


def test_events_configmaps_leases(apiserver):
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    _apply(apiserver, {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web-1.17f0", "namespace": "default"},
                       "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default"},
                       "reason": "Started", "message": "Started container web", "type": "Normal",
                       "source": {"component": "kubelet", "host": "node01"}, "count": 2,
                       "firstTimestamp": now, "lastTimestamp": now})
    headers, rows = get(apiserver, "events", "--field-selector", "involvedObject.name=web-1")
    assert headers == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert without(headers, rows, "LAST SEEN") == [["Normal", "Started", "pod/web-1", "Started container web"]]
    headers, rows = get(apiserver, "events", "-o", "wide", "--field-selector", "involvedObject.name=web-1")
    assert headers == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE", "FIRST SEEN",
                       "COUNT", "NAME"]
    assert without(headers, rows, "LAST SEEN", "FIRST SEEN") == [
        ["Normal", "Started", "pod/web-1", "", "kubelet, node01", "Started container web", "2", "web-1.17f0"]]

    apiserver.kubectl("create", "configmap", "settings", "--from-literal=a=1", "--from-literal=b=2")
    headers, rows = get(apiserver, "configmaps", "settings")
    assert without(headers, rows, "AGE") == [["settings", "2"]]

    _apply(apiserver, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": "node01", "namespace": "kube-node-lease"},
                       "spec": {"holderIdentity": "node01", "leaseDurationSeconds": 40}})
    headers, rows = get(apiserver, "leases", "-n", "kube-node-lease", "node01")
    assert headers == ["NAME", "HOLDER", "AGE"]
    assert without(headers, rows, "AGE") == [["node01", "node01"]]


def test_all_namespaces_adds_the_namespace_column(apiserver):
    headers, rows = get(apiserver, "svc", "-A")
    assert headers[:2] == ["NAMESPACE", "NAME"]
    assert ["kube-system", "kube-dns"] in [r[:2] for r in rows]


def test_watch_prints_rows_per_event(apiserver):
    env_args = [kubectl_path(), "--kubeconfig", str(apiserver.kubeconfig), "get", "configmaps", "-w",
                "--output-watch-events", "-l", "watch=me"]
    proc = subprocess.Popen(env_args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout], daemon=True).start()

    def next_line(timeout: float = 15) -> str:
        return lines.get(timeout=timeout).rstrip("\n")

    try:
        time.sleep(1)  # let the watch start before the first event
        apiserver.kubectl("create", "configmap", "watched", "--from-literal=k=v")
        apiserver.kubectl("label", "configmap", "watched", "watch=me")
        header = next_line()
        assert header.split() == ["EVENT", "NAME", "DATA", "AGE"]
        first = next_line().split()
        assert first[:3] == ["ADDED", "watched", "1"]
        apiserver.kubectl("annotate", "configmap", "watched", "note=x")
        assert next_line().split()[:3] == ["MODIFIED", "watched", "1"]
        apiserver.kubectl("delete", "configmap", "watched")
        assert next_line().split()[:3] == ["DELETED", "watched", "1"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_labels_columns_and_sorting_use_the_row_objects(apiserver, seed_pods):
    # --show-labels and -L read the row's PartialObjectMetadata; --sort-by asks for whole objects
    headers, rows = get(apiserver, "pods", "-l", "app=myapp", "--show-labels")
    assert headers[-1] == "LABELS"
    assert {r[-1] for r in rows} == {"app=myapp,release=canary"}
    headers, rows = get(apiserver, "pods", "-l", "app=myapp", "-L", "release")
    assert headers[-1] == "RELEASE" and {r[-1] for r in rows} == {"canary"}
    headers, rows = get(apiserver, "pods", "-l", "app=myapp", "-o", "wide", "--sort-by", ".status.podIP")
    assert [r[headers.index("IP")] for r in rows] == ["10.244.1.38", "10.244.2.29", "10.244.2.30"]


def test_a_bound_pod_being_deleted_is_terminating(apiserver):
    _apply(apiserver, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "leaving", "namespace": "default"},
                       "spec": {"nodeName": "node09", "containers": [{"name": "c", "image": "nginx"}]}})
    apiserver.kubectl("delete", "pod", "leaving", "--wait=false")
    headers, rows = get(apiserver, "pod", "leaving")
    assert rows[0][headers.index("STATUS")] == "Terminating"
    apiserver.kubectl("delete", "pod", "leaving", "--grace-period=0", "--force", check=False)
