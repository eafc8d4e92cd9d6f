"""The change tracker: Services + EndpointSlices → desired state, as Kubernetes defines it."""

from __future__ import annotations

from lightkube.resources.core_v1 import Service
from lightkube.resources.discovery_v1 import EndpointSlice

from kubesvc.proxy.model import ServicePortName, endpoint_hash, port_proto_hash
from kubesvc.proxy.tracker import ChangeTracker


def svc(name, spec, status=None, ns="default"):
    d = {"metadata": {"name": name, "namespace": ns}, "spec": spec}
    if status:
        d["status"] = status
    return Service.from_dict(d)


def eps(name, svc_name, endpoints, port=8080, port_name="http", proto="TCP", ns="default"):
    return EndpointSlice.from_dict({
        "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc_name}},
        "addressType": "IPv4", "ports": [{"name": port_name, "port": port, "protocol": proto}],
        "endpoints": endpoints})


def ep(ip, node="n1", **cond):
    return {"addresses": [ip], "nodeName": node, "conditions": cond or {"ready": True}}


PORTS = [{"name": "http", "port": 80, "targetPort": 8080}]


def test_kube_proxy_hashes():
    # values from real clusters' iptables-save
    assert port_proto_hash("default/kubernetes:https", "tcp") == "NPX46M4PTMTKRN6Y"
    assert port_proto_hash(ServicePortName("kube-system", "kube-dns", "dns", "UDP"), "udp") == "TCOU7JCQXEZGVUNU"
    assert port_proto_hash("kube-system/kube-dns:metrics", "tcp") == "JD5MR3NA4I4DYORP"
    assert len(endpoint_hash("default/a:http", "tcp", "10.244.0.2:80")) == 16


def test_headless_and_externalname_produce_nothing():
    t = ChangeTracker("n1")
    t.service_update(svc("h", {"clusterIP": "None", "ports": PORTS}))
    t.service_update(svc("x", {"type": "ExternalName", "externalName": "example.com"}))
    t.slice_update(eps("h-1", "h", [ep("10.244.0.2")]))
    assert t.desired().services == {}


def test_ready_then_terminating_fallback_and_local():
    t = ChangeTracker("n1")
    t.service_update(svc("a", {"clusterIP": "10.96.0.5", "ports": PORTS, "type": "NodePort",
                               "externalTrafficPolicy": "Local"}))
    t.slice_update(eps("a-1", "a", [ep("10.244.0.2", ready=True), ep("10.244.0.3", "n2", ready=True),
                                    ep("10.244.0.4", ready=False, serving=True, terminating=True)]))
    (entry,) = t.desired().services.values()
    assert [e.ip for e in entry.endpoints.cluster] == ["10.244.0.2", "10.244.0.3"]
    assert [e.ip for e in entry.external_endpoints] == ["10.244.0.2"]
    # nothing ready any more: terminating-but-serving endpoints take over
    t.slice_update(eps("a-1", "a", [ep("10.244.0.2", ready=False),
                                    ep("10.244.0.4", ready=False, serving=True, terminating=True)]))
    d = t.desired()
    (entry,) = d.services.values()
    assert [e.ip for e in entry.endpoints.cluster] == ["10.244.0.4"]
    assert d.changed == {entry.port.name}


def test_service_fields_and_affinity():
    t = ChangeTracker("n1")
    t.service_update(svc("lb", {"clusterIP": "10.96.0.9", "type": "LoadBalancer", "ports": [
        {"name": "http", "port": 80, "nodePort": 30080}], "externalIPs": ["203.0.113.1"],
        "sessionAffinity": "ClientIP", "externalTrafficPolicy": "Local", "healthCheckNodePort": 32000,
        "loadBalancerSourceRanges": ["198.51.100.0/24"]},
        status={"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}))
    (entry,) = t.desired().services.values()
    sp = entry.port
    assert (sp.node_port, sp.external_ips, sp.load_balancer_ips) == (30080, ("203.0.113.1",), ("198.51.100.7",))
    assert sp.affinity_timeout == 10800 and sp.external_policy_local and sp.health_check_node_port == 32000
    assert sp.load_balancer_source_ranges == ("198.51.100.0/24",)


def test_slices_merge_and_delete():
    t = ChangeTracker("n1")
    t.service_update(svc("a", {"clusterIP": "10.96.0.5", "ports": PORTS}))
    t.slice_update(eps("a-1", "a", [ep("10.244.0.2")]))
    t.slice_update(eps("a-2", "a", [ep("10.244.0.3"), ep("10.244.0.2")]))
    (entry,) = t.desired().services.values()
    assert [e.ip for e in entry.endpoints.cluster] == ["10.244.0.2", "10.244.0.3"]
    t.slice_delete(eps("a-2", "a", []))
    (entry,) = t.desired().services.values()
    assert [e.ip for e in entry.endpoints.cluster] == ["10.244.0.2"]
    t.service_delete(svc("a", {}))
    assert t.desired().services == {}


def test_only_dirty_services_change():
    t = ChangeTracker("n1")
    for i in range(5):
        t.service_update(svc(f"s{i}", {"clusterIP": f"10.96.1.{i}", "ports": PORTS}))
    t.desired()
    t.slice_update(eps("s3-1", "s3", [ep("10.244.0.2")]))
    d = t.desired()
    assert d.changed == {ServicePortName("default", "s3", "http", "TCP")}
    assert len(d.services) == 5
