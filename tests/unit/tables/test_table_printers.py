"""Tables as kube-apiserver prints them: columns, cells, row objects (pure functions)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from kubesvc.objects import registry, tables
from kubesvc.objects.printers.base import human_duration, selector_string

NOW = 1_700_000_000.0


def ts(ago: float) -> str:
    return datetime.fromtimestamp(NOW - ago, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rows(kind: str, objs: list[dict], group: str = "") -> list[list]:
    t = tables.to_table(registry.by_kind(group, kind), objs, now=NOW)
    return [r["cells"] for r in t["rows"]]


def headers(kind: str, group: str = "") -> list[tuple[str, str, str, int]]:
    t = tables.to_table(registry.by_kind(group, kind), [], now=NOW)
    return [(c["name"], c["type"], c["format"], c["priority"]) for c in t["columnDefinitions"]]


@pytest.mark.parametrize("seconds,text", [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (4, "4s"), (119, "119s"), (120, "2m"), (455, "7m35s"),
    (600, "10m"), (174 * 60 + 30, "174m"), (3 * 3600 + 60, "3h1m"), (3 * 3600, "3h"), (8 * 3600, "8h"),
    (47 * 3600, "47h"), (5 * 86400 + 17 * 3600 + 59, "5d17h"), (6 * 86400, "6d"), (9 * 86400, "9d"),
    (800 * 86400, "2y70d"), (730 * 86400, "2y"), (3000 * 86400, "8y"),
])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


# ---------------------------------------------------------------- services (the seed)

def svc(name, typ="ClusterIP", ip=None, ports=(), age=0.0, **spec):
    s = {"type": typ, "ports": list(ports), **spec}
    if ip is not None:
        s["clusterIP"] = ip
        s["clusterIPs"] = [ip]
    return {"metadata": {"name": name, "creationTimestamp": ts(age)}, "spec": s}


def test_service_columns():
    assert headers("Service") == [
        ("Name", "string", "name", 0), ("Type", "string", "", 0), ("Cluster-IP", "string", "", 0),
        ("External-IP", "string", "", 0), ("Port(s)", "string", "", 0), ("Age", "string", "", 0),
        ("Selector", "string", "", 1)]


def test_seed_service_rows():
    got = rows("Service", [
        svc("kubernetes", ip="10.96.0.1", ports=[{"port": 443, "protocol": "TCP"}], age=5 * 86400 + 20 * 3600),
        svc("myapp", "NodePort", "10.99.99.99", [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30080}],
            age=174 * 60, selector={"app": "myapp", "release": "canary"}),
        svc("myapp-svc-headless", ip="None", ports=[{"port": 80, "protocol": "TCP"}], age=6,
            selector={"app": "myapp", "release": "canary"}),
        svc("redis", ip="10.97.97.97", ports=[{"port": 6379, "protocol": "TCP"}], age=3 * 3600 + 60,
            selector={"app": "redis", "role": "logstor"}),
        svc("kube-dns", ip="10.96.0.10", ports=[{"name": "dns", "port": 53, "protocol": "UDP"},
                                               {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                                               {"name": "metrics", "port": 9153, "protocol": "TCP"}],
            age=5 * 86400 + 20 * 3600, selector={"k8s-app": "kube-dns"}),
    ])
    assert got == [
        ["kubernetes", "ClusterIP", "10.96.0.1", "<none>", "443/TCP", "5d20h", "<none>"],
        ["myapp", "NodePort", "10.99.99.99", "<none>", "80:30080/TCP", "174m", "app=myapp,release=canary"],
        ["myapp-svc-headless", "ClusterIP", "None", "<none>", "80/TCP", "6s", "app=myapp,release=canary"],
        ["redis", "ClusterIP", "10.97.97.97", "<none>", "6379/TCP", "3h1m", "app=redis,role=logstor"],
        ["kube-dns", "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP,9153/TCP", "5d20h", "k8s-app=kube-dns"],
    ]


def test_service_external_ip_column():
    lb = svc("lb", "LoadBalancer", "10.96.3.3", [{"port": 80, "protocol": "TCP", "nodePort": 31000}])
    lb_ready = dict(lb, status={"loadBalancer": {"ingress": [{"ip": "172.18.0.9"}, {"hostname": "lb.example"},
                                                             {"ip": "172.18.0.10"}]}})
    lb_extra = dict(lb_ready, spec=dict(lb["spec"], externalIPs=["192.0.2.1"]))
    ext = svc("ext", "ExternalName", externalName="db.example.com")
    with_ips = svc("web", ip="10.96.4.4", ports=[{"port": 80, "protocol": "TCP"}], externalIPs=["192.0.2.7", "192.0.2.8"])
    got = [r[1:5] for r in rows("Service", [lb, lb_ready, lb_extra, ext, with_ips])]
    assert got == [
        ["LoadBalancer", "10.96.3.3", "<pending>", "80:31000/TCP"],
        # a sorted set; the server prints wide, so no truncation at 16 characters
        ["LoadBalancer", "10.96.3.3", "172.18.0.10,172.18.0.9,lb.example", "80:31000/TCP"],
        ["LoadBalancer", "10.96.3.3", "172.18.0.10,172.18.0.9,lb.example,192.0.2.1", "80:31000/TCP"],
        ["ExternalName", "<none>", "db.example.com", "<none>"],
        ["ClusterIP", "10.96.4.4", "192.0.2.7,192.0.2.8", "80/TCP"],
    ]


# ---------------------------------------------------------------- pods

def pod(name, *, phase="Running", containers=1, statuses=None, init=None, init_statuses=None, age=60.0,
        node="node01", ip="10.244.1.38", conditions=None, deleting=False, reason=None, gates=None):
    spec = {"containers": [{"name": f"c{i}", "image": "nginx"} for i in range(containers)], "nodeName": node}
    if init:
        spec["initContainers"] = init
    if gates:
        spec["readinessGates"] = [{"conditionType": g} for g in gates]
    status = {"phase": phase}
    if ip:
        status["podIP"], status["podIPs"] = ip, [{"ip": ip}]
    if statuses is not None:
        status["containerStatuses"] = statuses
    if init_statuses is not None:
        status["initContainerStatuses"] = init_statuses
    if conditions:
        status["conditions"] = conditions
    if reason:
        status["reason"] = reason
    meta = {"name": name, "creationTimestamp": ts(age)}
    if deleting:
        meta["deletionTimestamp"] = ts(-30)
    return {"metadata": meta, "spec": spec, "status": status}


def running(i=0, ready=True, restarts=0, last_finished=None):
    s = {"name": f"c{i}", "ready": ready, "restartCount": restarts, "image": "nginx", "imageID": "",
         "state": {"running": {"startedAt": ts(50)}}}
    if last_finished is not None:
        s["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ts(last_finished)}}
    return s


def waiting(reason, i=0, restarts=0, last_finished=None):
    s = {"name": f"c{i}", "ready": False, "restartCount": restarts, "image": "nginx", "imageID": "",
         "state": {"waiting": {"reason": reason}}}
    if last_finished is not None:
        s["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ts(last_finished)}}
    return s


def terminated(exit_code=0, reason="Completed", i=0, signal=0):
    t = {"exitCode": exit_code, "finishedAt": ts(10)}
    if reason:
        t["reason"] = reason
    if signal:
        t["signal"] = signal
    return {"name": f"c{i}", "ready": False, "restartCount": 0, "image": "busybox", "imageID": "",
            "state": {"terminated": t}}


def test_pod_columns():
    assert headers("Pod") == [
        ("Name", "string", "name", 0), ("Ready", "string", "", 0), ("Status", "string", "", 0),
        ("Restarts", "string", "", 0), ("Age", "string", "", 0), ("IP", "string", "", 1),
        ("Node", "string", "", 1), ("Nominated Node", "string", "", 1), ("Readiness Gates", "string", "", 1)]


def test_seed_pods_wide():
    got = rows("Pod", [
        pod("myapp-deployment-675558bfc5-q8gxv", statuses=[running()], age=229, ip="10.244.1.38", node="node01"),
        pod("myapp-deployment-675558bfc5-tdfk7", statuses=[running()], age=228, ip="10.244.2.30", node="node02"),
        pod("myapp-deployment-675558bfc5-zhn8b", statuses=[running()], age=231, ip="10.244.2.29", node="node02"),
    ])
    assert got == [
        ["myapp-deployment-675558bfc5-q8gxv", "1/1", "Running", "0", "3m49s", "10.244.1.38", "node01", "<none>", "<none>"],
        ["myapp-deployment-675558bfc5-tdfk7", "1/1", "Running", "0", "3m48s", "10.244.2.30", "node02", "<none>", "<none>"],
        ["myapp-deployment-675558bfc5-zhn8b", "1/1", "Running", "0", "3m51s", "10.244.2.29", "node02", "<none>", "<none>"],
    ]


@pytest.mark.parametrize("p,ready,status,restarts", [
    (pod("pending", phase="Pending", ip=None, node=""), "0/1", "Pending", "0"),
    (pod("creating", phase="Pending", statuses=[waiting("ContainerCreating")]), "0/1", "ContainerCreating", "0"),
    (pod("crash", statuses=[waiting("CrashLoopBackOff", restarts=3, last_finished=5)]), "0/1", "CrashLoopBackOff",
     "3 (5s ago)"),
    (pod("flappy", statuses=[running(restarts=2, last_finished=125)]), "1/1", "Running", "2 (2m5s ago)"),
    (pod("done", phase="Succeeded", statuses=[terminated()]), "0/1", "Completed", "0"),
    (pod("failed", phase="Failed", statuses=[terminated(1, "Error")]), "0/1", "Error", "0"),
    (pod("exit", phase="Failed", statuses=[terminated(3, "")]), "0/1", "ExitCode:3", "0"),
    (pod("killed", phase="Failed", statuses=[terminated(137, "", signal=9)]), "0/1", "Signal:9", "0"),
    (pod("two", containers=2, statuses=[running(0), running(1, ready=False)]), "1/2", "Running", "0"),
    (pod("gone", statuses=[running()], deleting=True), "1/1", "Terminating", "0"),
    (pod("lost", statuses=[running()], deleting=True, reason="NodeLost"), "1/1", "Unknown", "0"),
    (pod("finished-then-deleted", phase="Succeeded", statuses=[terminated()], deleting=True), "0/1", "Completed", "0"),
    (pod("evicted", phase="Failed", reason="Evicted", statuses=[]), "0/1", "Evicted", "0"),
    (pod("gated", phase="Pending", ip=None, node="",
         conditions=[{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]),
     "0/1", "SchedulingGated", "0"),
    (pod("half-done", containers=2, statuses=[terminated(0, "Completed", 0), running(1)],
         conditions=[{"type": "Ready", "status": "False"}]), "1/2", "NotReady", "0"),
    (pod("half-done-ready", containers=2, statuses=[terminated(0, "Completed", 0), running(1)],
         conditions=[{"type": "Ready", "status": "True"}]), "1/2", "Running", "0"),
])
def test_pod_status_column(p, ready, status, restarts):
    name, got_ready, got_status, got_restarts = rows("Pod", [p])[0][:4]
    assert (got_ready, got_status, got_restarts) == (ready, status, restarts)


INIT = [{"name": "init-a", "image": "busybox"}, {"name": "init-b", "image": "busybox"}]


def init_status(name, state, restarts=0, started=None, ready=False):
    s = {"name": name, "ready": ready, "restartCount": restarts, "image": "busybox", "imageID": "", "state": state}
    if started is not None:
        s["started"] = started
    return s


@pytest.mark.parametrize("inits,status", [
    ([init_status("init-a", {"running": {}}), init_status("init-b", {"waiting": {"reason": "PodInitializing"}})],
     "Init:0/2"),
    ([init_status("init-a", {"terminated": {"exitCode": 0, "reason": "Completed"}}),
      init_status("init-b", {"running": {}})], "Init:1/2"),
    ([init_status("init-a", {"waiting": {"reason": "CrashLoopBackOff"}}, restarts=4)], "Init:CrashLoopBackOff"),
    ([init_status("init-a", {"terminated": {"exitCode": 1, "reason": "Error"}})], "Init:Error"),
    ([init_status("init-a", {"terminated": {"exitCode": 2}})], "Init:ExitCode:2"),
    ([init_status("init-a", {"terminated": {"exitCode": 137, "signal": 9}})], "Init:Signal:9"),
])
def test_pod_init_status(inits, status):
    p = pod("init", phase="Pending", init=INIT, init_statuses=inits,
            statuses=[waiting("PodInitializing")])
    assert rows("Pod", [p])[0][2] == status


def test_sidecar_counts_as_a_container_once_started():
    p = pod("sidecar", init=[{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}],
            init_statuses=[init_status("proxy", {"running": {}}, restarts=1, started=True, ready=True)],
            statuses=[running()], conditions=[{"type": "Initialized", "status": "True"}])
    assert rows("Pod", [p])[0][1:4] == ["2/2", "Running", "1"]


def test_pod_readiness_gates_and_nominated_node():
    p = pod("gated", statuses=[running()], gates=["example.com/a", "example.com/b"],
            conditions=[{"type": "example.com/a", "status": "True"}, {"type": "example.com/b", "status": "False"}])
    p["status"]["nominatedNodeName"] = "node03"
    assert rows("Pod", [p])[0][5:] == ["10.244.1.38", "node01", "node03", "1/2"]


def test_completed_pods_carry_the_row_condition():
    t = tables.to_table(registry.by_kind("", "Pod"), [pod("done", phase="Succeeded", statuses=[terminated()]),
                                                     pod("up", statuses=[running()])], now=NOW)
    assert t["rows"][0]["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                           "message": "The pod has completed successfully."}]
    assert "conditions" not in t["rows"][1]


# ---------------------------------------------------------------- endpoints, slices

def test_endpoints_cells():
    ep = {"metadata": {"name": "myapp", "creationTimestamp": ts(30)}, "subsets": [
        {"addresses": [{"ip": "10.244.1.5"}, {"ip": "10.244.2.3"}], "ports": [{"port": 80, "protocol": "TCP"}]},
        {"addresses": [{"ip": "10.244.3.7"}, {"ip": "fd00::5"}], "ports": [{"port": 80, "protocol": "TCP"}]},
    ]}
    headless = {"metadata": {"name": "hl"}, "subsets": [{"addresses": [{"ip": "10.244.1.5"}]}]}
    empty = {"metadata": {"name": "none"}}
    not_ready = {"metadata": {"name": "nr"}, "subsets": [{"notReadyAddresses": [{"ip": "10.244.1.5"}],
                                                          "ports": [{"port": 80}]}]}
    assert rows("Endpoints", [ep, headless, empty, not_ready]) == [
        ["myapp", "10.244.1.5:80,10.244.2.3:80,10.244.3.7:80 + 1 more...", "30s"],
        ["hl", "10.244.1.5", "<unknown>"],
        ["none", "<none>", "<unknown>"],
        ["nr", "", "<unknown>"],
    ]


def test_endpointslice_cells():
    assert headers("EndpointSlice", "discovery.k8s.io") == [
        ("Name", "string", "name", 0), ("AddressType", "string", "", 0), ("Ports", "string", "", 0),
        ("Endpoints", "string", "", 0), ("Age", "string", "", 0)]
    es = {"metadata": {"name": "kube-dns-abcde", "creationTimestamp": ts(90)}, "addressType": "IPv4",
          "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53},
                    {"name": "metrics", "port": 9153}, {"name": "extra", "port": 1}],
          "endpoints": [{"addresses": ["10.244.0.2"]}, {"addresses": ["10.244.0.3"]}]}
    none = {"metadata": {"name": "empty"}, "addressType": "IPv4", "ports": [{"name": "http"}, {}], "endpoints": []}
    assert rows("EndpointSlice", [es, none], "discovery.k8s.io") == [
        ["kube-dns-abcde", "IPv4", "53,53,9153 + 1 more...", "10.244.0.2,10.244.0.3", "90s"],
        ["empty", "IPv4", "http,*", "<unset>", "<unknown>"],
    ]


# ---------------------------------------------------------------- workloads

TEMPLATE = {"metadata": {"labels": {"app": "myapp"}},
            "spec": {"containers": [{"name": "myapp", "image": "ikubernetes/myapp:v1"},
                                    {"name": "sidecar", "image": "busybox"}]}}


def test_deployment_cells():
    assert [h[0] for h in headers("Deployment", "apps")] == [
        "Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]
    d = {"metadata": {"name": "myapp-deployment", "creationTimestamp": ts(240)},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"release": "canary", "app": "myapp"}}, "template": TEMPLATE},
         "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    assert rows("Deployment", [d], "apps") == [
        ["myapp-deployment", "2/3", 3, 2, "4m", "myapp,sidecar", "ikubernetes/myapp:v1,busybox",
         "app=myapp,release=canary"]]


def test_replicaset_cells():
    assert [(h[0], h[1]) for h in headers("ReplicaSet", "apps")][:4] == [
        ("Name", "string"), ("Desired", "integer"), ("Current", "integer"), ("Ready", "integer")]
    rs = {"metadata": {"name": "myapp-deployment-675558bfc5", "creationTimestamp": ts(240)},
          "spec": {"replicas": 3, "template": TEMPLATE, "selector": {
              "matchLabels": {"app": "myapp", "pod-template-hash": "675558bfc5"},
              "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]},
                                   {"key": "canary", "operator": "DoesNotExist"}]}},
          "status": {"replicas": 3}}
    assert rows("ReplicaSet", [rs], "apps") == [
        ["myapp-deployment-675558bfc5", 3, 3, 0, "4m", "myapp,sidecar", "ikubernetes/myapp:v1,busybox",
         "app=myapp,!canary,pod-template-hash=675558bfc5,tier in (api,web)"]]


def test_selector_strings():
    assert selector_string(None) == ""
    assert selector_string({}) == ""
    assert selector_string({"matchExpressions": [{"key": "a", "operator": "Exists"},
                                                 {"key": "b", "operator": "NotIn", "values": ["y", "x"]}]}) == \
        "a,b notin (x,y)"


# ---------------------------------------------------------------- cluster kinds

def test_node_cells():
    node = {"metadata": {"name": "node01", "creationTimestamp": ts(5 * 86400 + 17 * 3600),
                         "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master",
                                    "node-role.kubernetes.io/": "x"}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "Hostname", "address": "node01"},
                                     {"type": "InternalIP", "address": "192.168.1.10"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                                    "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "kubesvc://0.1.0"}}}
    bare = {"metadata": {"name": "node02"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}
    assert rows("Node", [node, bare]) == [
        ["node01", "Ready,SchedulingDisabled", "control-plane,master", "5d17h", "v1.32.0", "192.168.1.10", "<none>",
         "Debian GNU/Linux 12 (bookworm)", "6.1.0-18-amd64", "kubesvc://0.1.0"],
        ["node02", "NotReady", "<none>", "<unknown>", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"],
    ]
    assert rows("Node", [{"metadata": {"name": "n"}}])[0][1] == "Unknown"


def test_namespace_configmap_lease_cells():
    assert rows("Namespace", [{"metadata": {"name": "default", "creationTimestamp": ts(3)},
                               "status": {"phase": "Active"}}]) == [["default", "Active", "3s"]]
    assert rows("ConfigMap", [{"metadata": {"name": "cfg", "creationTimestamp": ts(3)},
                               "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}]) == [["cfg", 3, "3s"]]
    assert rows("Lease", [{"metadata": {"name": "node01", "creationTimestamp": ts(3)},
                           "spec": {"holderIdentity": "node01"}}, {"metadata": {"name": "free"}, "spec": {}}],
                "coordination.k8s.io") == [["node01", "node01", "3s"], ["free", "", "<unknown>"]]


def test_event_cells():
    assert [(h[0], h[3]) for h in headers("Event")] == [
        ("Last Seen", 0), ("Type", 0), ("Reason", 0), ("Object", 0), ("Subobject", 1), ("Source", 1),
        ("Message", 0), ("First Seen", 1), ("Count", 1), ("Name", 1)]
    ev = {"metadata": {"name": "web-1.17f"}, "involvedObject": {"kind": "Pod", "name": "web-1",
                                                                "fieldPath": "spec.containers{web}"},
          "reason": "Started", "message": "Started container web\n", "type": "Normal",
          "source": {"component": "kubelet", "host": "node01"}, "firstTimestamp": ts(300), "lastTimestamp": ts(20),
          "count": 4}
    new_style = {"metadata": {"name": "e2"}, "involvedObject": {"kind": "Node"}, "reason": "RegisteredNode",
                 "type": "Normal", "eventTime": "2023-11-14T22:12:20.000000Z", "reportingComponent": "node-controller",
                 "message": "Node registered"}
    series = dict(ev, series={"count": 9, "lastObservedTime": datetime.fromtimestamp(NOW - 2, tz=timezone.utc)
                              .strftime("%Y-%m-%dT%H:%M:%S.000000Z")})
    assert rows("Event", [ev, new_style, series]) == [
        ["20s", "Normal", "Started", "pod/web-1", "spec.containers{web}", "kubelet, node01",
         "Started container web", "5m", 4, "web-1.17f"],
        ["60s", "Normal", "RegisteredNode", "node", "", "node-controller", "Node registered", "60s", 1, "e2"],
        ["2s", "Normal", "Started", "pod/web-1", "spec.containers{web}", "kubelet, node01",
         "Started container web", "5m", 9, "web-1.17f"],
    ]


# ---------------------------------------------------------------- the Table itself

def test_default_convertor_for_kinds_without_a_printer():
    from kubesvc.objects.registry import ResourceType
    rt = ResourceType("example.com", "v1", "Widget", "widgets", "widget", True)
    t = tables.to_table(rt, [{"metadata": {"name": "w", "creationTimestamp": "2019-04-07T08:51:30Z"}}], now=NOW)
    assert [(c["name"], c["type"], c["format"]) for c in t["columnDefinitions"]] == [
        ("Name", "string", "name"), ("Created At", "date", "")]
    assert t["rows"][0]["cells"] == ["w", "2019-04-07T08:51:30Z"]


def test_row_objects_and_metadata():
    rt = registry.by_kind("", "ConfigMap")
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default",
                                                                "resourceVersion": "42", "uid": "u"}, "data": {}}
    single = tables.to_table(rt, [cm], now=NOW)
    assert single["kind"] == "Table" and single["apiVersion"] == "meta.k8s.io/v1"
    assert single["metadata"] == {"resourceVersion": "42"}
    assert single["rows"][0]["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                           "metadata": cm["metadata"]}
    assert tables.to_table(rt, [cm], include_object="Object", now=NOW)["rows"][0]["object"] == cm
    assert "object" not in tables.to_table(rt, [cm], include_object="None", now=NOW)["rows"][0]
    listed = tables.to_table(rt, [cm, cm], list_meta={"resourceVersion": "50", "continue": ""}, now=NOW)
    assert listed["metadata"] == {"resourceVersion": "50"}
    assert tables.to_table(rt, [cm], include_headers=False, now=NOW)["columnDefinitions"] == []
    for c in single["columnDefinitions"]:
        assert set(c) == {"name", "type", "format", "description", "priority"}
        assert c["description"], c["name"]


def test_bad_include_object_is_refused():
    from kubesvc.objects.errors import StatusError
    with pytest.raises(StatusError) as e:
        tables.to_table(registry.by_kind("", "Pod"), [], include_object="Everything")
    assert e.value.code == 400


def test_every_served_kind_prints():
    for rt in registry.RESOURCES:
        t = tables.to_table(rt, [{"metadata": {"name": "x"}}], now=NOW)
        assert len(t["rows"][0]["cells"]) == len(t["columnDefinitions"]), rt.kind
        assert t["rows"][0]["cells"][0 if rt.kind != "Event" else 9] == "x"


def test_wants_table():
    assert tables.wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;"
                              "v=v1beta1;g=meta.k8s.io,application/json")
    assert not tables.wants_table("application/json")
    assert not tables.wants_table(None)


def test_scale_subresource_cells():
    from kubesvc.objects.registry import ResourceType
    rt = ResourceType("autoscaling", "v1", "Scale", "scale", "scale", True)
    t = tables.to_table(rt, [{"kind": "Scale", "apiVersion": "autoscaling/v1",
                              "metadata": {"name": "web", "creationTimestamp": ts(65)},
                              "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web"}}], now=NOW)
    assert [(c["name"], c["type"], c["format"]) for c in t["columnDefinitions"]] == [
        ("Name", "string", ""), ("Desired", "integer", ""), ("Available", "integer", ""), ("Age", "string", "")]
    assert t["rows"][0]["cells"] == ["web", 3, 2, "65s"]
    assert all(c["description"] for c in t["columnDefinitions"])
