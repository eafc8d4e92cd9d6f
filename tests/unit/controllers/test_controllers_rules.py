"""The controllers' rules as pure functions: hashes, queues, endpoint sets, slices, pools."""

from __future__ import annotations

import asyncio

import pytest
from lightkube.resources.core_v1 import Node, Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice

from kubesvc.controllers import endpoints as ep
from kubesvc.controllers import endpointslices as es
from kubesvc.controllers.deployments import int_or_percent
from kubesvc.controllers.loadbalancer import Pool, parse_pool
from kubesvc.controllers.nodeipam import CIDRSet
from kubesvc.controllers.scheduler import fit_failure, unschedulable_message
from kubesvc.controllers.util import SAFE_ALPHANUMS, pod_template_hash, rand_string, safe_encode_string
from kubesvc.controllers.workqueue import WorkQueue


def test_safe_encode_matches_kubernetes():
    # rand.SafeEncodeString of the decimal FNV sum: "236289784" -> "67b6dfcd8" (the seed's name)
    assert safe_encode_string("236289784") == "67b6dfcd8"
    assert all(c in SAFE_ALPHANUMS for c in rand_string(50))


def test_pod_template_hash_is_stable_and_shaped():
    tpl = {"metadata": {"labels": {"app": "myapp"}},
           "spec": {"containers": [{"name": "myapp", "image": "nginx"}]}}
    h = pod_template_hash(tpl)
    assert h == pod_template_hash({**tpl, "spec": {**tpl["spec"], "volumes": []}})
    assert 1 <= len(h) <= 10 and all(c in SAFE_ALPHANUMS for c in h)
    assert h != pod_template_hash(tpl, collision_count=1)
    # Pinned: a different hash for the same template would roll out every Deployment
    # again after an upgrade (new ReplicaSet names).
    assert (h, pod_template_hash(tpl, collision_count=1)) == ("b78589dc9", "5bdff6dd94")
    assert h != pod_template_hash({**tpl, "metadata": {"labels": {"app": "other"}}})


async def test_workqueue_dedupes_and_excludes_in_flight():
    q: WorkQueue = WorkQueue()
    q.add("a"); q.add("a"); q.add("b")
    assert len(q) == 2
    k = await q.get()
    assert k == "a"
    q.add("a")  # while processing: held back, not queued twice
    assert len(q) == 1
    q.done("a")
    assert len(q) == 2
    q.add_after("c", 0.01)
    assert [await q.get(), await q.get(), await asyncio.wait_for(q.get(), 1)] == ["b", "a", "c"]


def test_workqueue_add_after_under_a_millisecond_under_uvloop():
    # kubesvc controllers runs on uvloop, whose call_at gives a plain Handle (no .when())
    # for delays under 1 ms; a second add_after for the key raised AttributeError.
    import uvloop

    async def main() -> list:
        q: WorkQueue = WorkQueue()
        q.add_after("d", 0.0001)
        q.add_after("d", 5)  # later than the pending one: ignored
        q.add_after("e", 5)
        q.add_after("e", 0.01)  # earlier: replaces it
        return [await asyncio.wait_for(q.get(), 2), await asyncio.wait_for(q.get(), 2)]

    assert uvloop.run(main()) == ["d", "e"]


def _pod(name, ip, ready=True, labels=None, ports=None, terminating=False, hostname=None, subdomain=None,
         node="node1"):
    return Pod.from_dict({
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                     "labels": labels or {"app": "web"},
                     **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if terminating else {})},
        "spec": {"nodeName": node, "hostname": hostname, "subdomain": subdomain,
                 "containers": [{"name": "c", "ports": ports or []}]},
        "status": {"phase": "Running", "podIP": ip,
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    })


def _svc(ports, publish=False, name="web"):
    return Service.from_dict({
        "metadata": {"name": name, "namespace": "default", "uid": "svc-uid", "labels": {"team": "a"}},
        "spec": {"selector": {"app": "web"}, "ports": ports, "clusterIP": "10.96.0.5",
                 "publishNotReadyAddresses": publish},
    })


def test_endpoints_ready_notready_and_named_ports():
    svc = _svc([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}])
    pods = [_pod("a", "10.244.1.2", ports=[{"name": "http", "containerPort": 8080}]),
            _pod("b", "10.244.1.3", ready=False, ports=[{"name": "http", "containerPort": 8080}]),
            _pod("c", "10.244.1.4", ports=[{"name": "web", "containerPort": 9090}]),  # lacks "http"
            _pod("d", "10.244.1.5", terminating=True, ports=[{"name": "http", "containerPort": 8080}])]
    subsets = ep.desired_subsets(svc, pods)
    assert subsets == [{
        "addresses": [{"ip": "10.244.1.2", "nodeName": "node1",
                       "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}}],
        "notReadyAddresses": [{"ip": "10.244.1.3", "nodeName": "node1",
                               "targetRef": {"kind": "Pod", "namespace": "default", "name": "b", "uid": "uid-b"}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }]
    # stored order does not matter: what is stored compares equal
    assert ep.normalize_subsets(subsets) == subsets
    # publishNotReadyAddresses: everything (terminating too) is an address
    all_ready = ep.desired_subsets(_svc(svc.to_dict()["spec"]["ports"], publish=True), pods)
    assert [a["ip"] for a in all_ready[0]["addresses"]] == ["10.244.1.2", "10.244.1.3", "10.244.1.5"]


def test_slices_conditions_hostname_and_groups():
    svc = _svc([{"name": "http", "port": 80, "targetPort": "http"}])
    pods = [_pod("a", "10.244.1.2", ports=[{"name": "http", "containerPort": 8080}],
                 hostname="a", subdomain="web"),
            _pod("b", "10.244.1.3", ports=[{"name": "http", "containerPort": 8081}]),
            _pod("t", "10.244.1.4", terminating=True, ports=[{"name": "http", "containerPort": 8080}]),
            _pod("n", "10.244.1.6", ports=[{"name": "other", "containerPort": 1}])]
    groups = es.desired_endpoints(svc, pods, "IPv4")
    assert len(groups) == 2  # 8080 and 8081
    g8080 = groups[es.port_key([{"name": "http", "port": 8080, "protocol": "TCP"}])][1]
    assert g8080["uid-a"]["hostname"] == "a"
    assert g8080["uid-a"]["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert g8080["uid-t"]["conditions"] == {"ready": False, "serving": True, "terminating": True}
    assert "uid-n" not in str(groups)


def test_slice_reconcile_minimal_churn_and_limits():
    svc = _svc([{"name": "", "port": 80, "targetPort": 80}])
    pods = [_pod(f"p{i}", f"10.244.{i // 250}.{i % 250 + 1}") for i in range(250)]
    desired = es.desired_endpoints(svc, pods, "IPv4")
    plan = es.reconcile(svc, [], desired, "IPv4")
    assert [len(b["endpoints"]) for b in plan.create] == [100, 100, 50]
    b = plan.create[0]
    assert b["metadata"]["labels"] == {"team": "a", "kubernetes.io/service-name": "web",
                                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    assert b["metadata"]["ownerReferences"][0]["kind"] == "Service"
    assert b["metadata"]["name"].startswith("web-")
    existing = []
    for i, body in enumerate(plan.create):
        body["metadata"]["uid"] = f"s{i}"
        existing.append(EndpointSlice.from_dict(body))
    # unchanged world: nothing to write
    again = es.reconcile(svc, existing, desired, "IPv4")
    assert (again.create, again.update, again.delete) == ([], [], [])
    # one pod turns unready: exactly one slice is rewritten
    pods[7] = _pod("p7", pods[7].status.podIP, ready=False)
    plan2 = es.reconcile(svc, existing, es.desired_endpoints(svc, pods, "IPv4"), "IPv4")
    assert (len(plan2.create), len(plan2.update), len(plan2.delete)) == (0, 1, 0)
    # no pods: one placeholder slice without ports stays
    plan3 = es.reconcile(svc, existing, {}, "IPv4")
    assert len(plan3.delete) == 2 and len(plan3.update) == 1 and plan3.update[0]["ports"] == []


def test_lb_pool_ranges():
    assert parse_pool("192.168.10.0/30") == [(3232238081, 3232238082)]
    p = Pool("172.18.255.200-172.18.255.201")
    assert p.free() == "172.18.255.200"
    p.assign("172.18.255.200", ("default", "a"))
    assert p.free() == "172.18.255.201"
    p.assign("172.18.255.201", ("default", "b"))
    assert p.free() is None
    p.release_all(("default", "a"))
    assert p.free() == "172.18.255.200"
    with pytest.raises(ValueError):
        parse_pool("10.0.0.9-10.0.0.1")


def test_cidrset_lowest_free_and_stable():
    s = CIDRSet("10.244.0.0/16", 24)
    assert s.occupy("10.244.1.0/24")
    assert s.allocate() == "10.244.0.0/24"
    assert s.allocate() == "10.244.2.0/24"
    assert not s.occupy("10.245.0.0/24")


def test_scheduler_reasons_in_kube_words():
    node = Node.from_dict({"metadata": {"name": "n1", "labels": {"disk": "hdd"}},
                           "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    pod = Pod.from_dict({"metadata": {"name": "p"}, "spec": {"nodeSelector": {"disk": "ssd"},
                                                            "containers": [{"name": "c"}]}})
    assert fit_failure(pod, node) == "node(s) didn't match Pod's node affinity/selector"
    from collections import Counter
    msg = unschedulable_message(3, Counter({"node(s) didn't match Pod's node affinity/selector": 2,
                                            "node(s) were not ready": 1}))
    assert msg == ("0/3 nodes are available: 1 node(s) were not ready, "
                   "2 node(s) didn't match Pod's node affinity/selector.")


def test_int_or_percent():
    assert int_or_percent("25%", 3, True) == 1 and int_or_percent("25%", 3, False) == 0
    assert int_or_percent(2, 10, True) == 2


def test_cli_refuses_bad_flags():
    from click.testing import CliRunner

    from kubesvc.controllers.cmd import command
    r = CliRunner().invoke(command, ["--server", "http://127.0.0.1:1", "--lb-pool", "10.0.0.9-10.0.0.1"])
    assert r.exit_code == 2 and "invalid range" in r.output
    r = CliRunner().invoke(command, ["--server", "http://127.0.0.1:1", "--cluster-cidr", "10.244.0.0/16",
                                     "--node-cidr-mask-size", "8"])
    assert r.exit_code == 2 and "larger than the cluster CIDR" in r.output
    r = CliRunner().invoke(command, ["--server", "http://127.0.0.1:1", "--controllers", "endpoints,bogus"])
    assert r.exit_code == 2 and "unknown controllers: bogus" in r.output


def test_controllers_flag_syntax():
    from kubesvc.controllers.manager import DEFAULT_CONTROLLERS, resolve_controllers
    assert resolve_controllers("*") == list(DEFAULT_CONTROLLERS)
    assert "nodelifecycle" not in resolve_controllers("*")
    assert resolve_controllers("*,nodelifecycle,-scheduler")[-1] == "nodelifecycle"
    assert "scheduler" not in resolve_controllers("*,-scheduler")
    assert resolve_controllers("endpoints,endpointslices") == ["endpoints", "endpointslices"]
    with pytest.raises(ValueError):
        resolve_controllers("*,bogus")


def test_eviction_honours_tolerations():
    from kubesvc.controllers.nodelifecycle import toleration_seconds, wanted_taints
    pod = Pod.from_dict({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}], "tolerations": [
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 30}]}})
    assert toleration_seconds(pod, "node.kubernetes.io/unreachable", 300) == 30
    assert toleration_seconds(pod, "node.kubernetes.io/not-ready", 300) == 300
    forever = Pod.from_dict({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}],
                                                                "tolerations": [{"operator": "Exists"}]}})
    assert toleration_seconds(forever, "node.kubernetes.io/unreachable", 300) is None
    assert wanted_taints("True") == []
    assert {t["key"] for t in wanted_taints("Unknown")} == {"node.kubernetes.io/unreachable"}
    assert {t["key"] for t in wanted_taints("False")} == {"node.kubernetes.io/not-ready"}


async def test_event_recorder_aggregates_like_client_go():
    from kubesvc.controllers.events import EventRecorder

    class Recording:  # stands in for the API: keeps what was written
        def __init__(self):
            self.created, self.patched = [], []

        async def create(self, obj, namespace=None):
            self.created.append(obj.to_dict())
            return obj

        async def patch(self, res, name, body, namespace=None, patch_type=None):
            self.patched.append((name, body))

    api = Recording()
    rec = EventRecorder(api)
    rec.start()
    svc = Service.from_dict({"metadata": {"name": "web", "namespace": "default", "uid": "u1"}})
    r = rec.for_component("service-controller")
    for _ in range(3):
        r.warning(svc, "AllocationFailed", "no available IPs", api_version="v1", kind="Service")
    for i in range(12):
        r.normal(svc, "Changed", f"message {i}", api_version="v1", kind="Service")
    await asyncio.sleep(0.2)
    await rec.stop()
    first = api.created[0]
    assert first["reason"] == "AllocationFailed" and first["count"] == 1 and first["type"] == "Warning"
    assert first["involvedObject"] == {"kind": "Service", "apiVersion": "v1", "name": "web", "uid": "u1",
                                       "namespace": "default"}
    assert first["metadata"]["name"].startswith("web.") and first["source"] == {"component": "service-controller"}
    assert [b["count"] for n, b in api.patched if n == first["metadata"]["name"]] == [2, 3]
    changed = [e for e in api.created if e["reason"] == "Changed"]
    # 10 distinct messages are written as they are; from the 11th on they are combined
    assert len(changed) == 11
    assert changed[-1]["message"] == "(combined from similar events): message 10"
    assert api.patched[-1][1]["message"] == "(combined from similar events): message 11"


async def test_event_spam_filter_allows_a_burst_of_25_per_object():
    from kubesvc.controllers.events import EventRecorder

    class Recording:
        def __init__(self):
            self.created = []

        async def create(self, obj, namespace=None):
            self.created.append(obj.to_dict())
            return obj

        async def patch(self, *a, **kw):
            pass

    api = Recording()
    rec = EventRecorder(api)
    rec.start()
    r = rec.for_component("replicaset-controller")
    rs = Service.from_dict({"metadata": {"name": "rs", "namespace": "default", "uid": "u2"}})
    other = Service.from_dict({"metadata": {"name": "rs2", "namespace": "default", "uid": "u3"}})
    for i in range(40):
        r.normal(rs, "SuccessfulCreate", f"Created pod: p{i}", api_version="apps/v1", kind="ReplicaSet")
    r.normal(other, "SuccessfulCreate", "Created pod: q", api_version="apps/v1", kind="ReplicaSet")
    await asyncio.sleep(0.2)
    await rec.stop()
    assert rec.dropped == 15
    assert any(e["involvedObject"]["name"] == "rs2" for e in api.created)


def _addrs(prefix: str, n: int) -> list[dict]:
    return [{"ip": f"{prefix}.{i // 250}.{i % 250}"} for i in range(n)]


def test_endpoints_over_capacity_keep_every_ready_address_before_not_ready_ones():
    # One port set with 10 ready and 995 not-ready pods, another with 50 ready ones:
    # 1,005 addresses, 60 of them ready. kube's truncateEndpoints keeps all 60 ready
    # ones and cuts the not-ready ones, in proportion per subset.
    a = {"addresses": _addrs("10.1", 10), "notReadyAddresses": _addrs("10.2", 995), "ports": [{"port": 80}]}
    b = {"addresses": _addrs("10.3", 50), "ports": [{"port": 81}]}
    out, truncated = ep.truncate([a, b])
    assert truncated
    assert sum(len(s.get("addresses", ())) for s in out) == 60
    assert sum(len(s.get("addresses", ())) + len(s.get("notReadyAddresses", ())) for s in out) == 1000
    # More ready addresses than fit: only ready ones, shared out by subset size.
    c = {"addresses": _addrs("10.4", 800), "notReadyAddresses": _addrs("10.5", 5), "ports": [{"port": 80}]}
    d = {"addresses": _addrs("10.6", 400), "ports": [{"port": 81}]}
    out, truncated = ep.truncate([c, d])
    assert truncated
    assert [len(s.get("addresses", ())) for s in out] == [667, 333]
    assert not any(s.get("notReadyAddresses") for s in out)
    small = [{"addresses": _addrs("10.7", 3), "ports": [{"port": 80}]}]
    assert ep.truncate(small) == (small, False)
