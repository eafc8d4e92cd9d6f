"""Service defaults, update preparation and validation, worded as kube-apiserver words them.

Expected texts are kube-apiserver's (pkg/apis/core/validation ValidateService and the
service registry strategy); each test states the rule it checks.
"""

from __future__ import annotations

import copy

import pytest

from kubesvc.objects.errors import StatusError, invalid_object
from kubesvc.objects.service import ServiceStrategy
from kubesvc.objects.strategy import strategy_for

S = ServiceStrategy()


def svc(name: str = "web", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": spec}


def created(obj: dict) -> dict:
    obj = copy.deepcopy(obj)
    S.prepare_for_create(obj)
    S.default(obj)
    S.default_for_storage(obj)
    return obj


def errors(obj: dict) -> list[str]:
    return [str(e) for e in S.validate(created(obj))]


def updated(old: dict, new: dict) -> tuple[dict, list[str]]:
    new = copy.deepcopy(new)
    S.prepare_for_update(new, old)  # the API server's order: prepare, then default
    S.default(new)
    S.default_for_storage(new)
    return new, [str(e) for e in S.validate_update(new, old)]


P80 = [{"port": 80}]


def test_registered_for_services():
    assert isinstance(strategy_for("", "Service"), ServiceStrategy)


# -- defaults ----------------------------------------------------------------------------

def test_defaults_clusterip():
    o = created(svc(ports=[{"port": 6379}], selector={"app": "redis"}))
    assert o["spec"] == {
        "ports": [{"port": 6379, "protocol": "TCP", "targetPort": 6379}],
        "selector": {"app": "redis"}, "sessionAffinity": "None", "type": "ClusterIP",
        "internalTrafficPolicy": "Cluster", "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"],
    }
    assert o["status"] == {"loadBalancer": {}}
    assert errors(o) == []


def test_defaults_requested_cluster_ip_fills_plural():
    o = created(svc(clusterIP="10.97.97.97", ports=P80))
    assert o["spec"]["clusterIPs"] == ["10.97.97.97"]


def test_defaults_nodeport_and_loadbalancer():
    np_ = created(svc(type="NodePort", ports=P80))["spec"]
    assert np_["externalTrafficPolicy"] == "Cluster" and "allocateLoadBalancerNodePorts" not in np_
    lb = created(svc(type="LoadBalancer", ports=P80))["spec"]
    assert lb["externalTrafficPolicy"] == "Cluster" and lb["allocateLoadBalancerNodePorts"] is True


def test_defaults_client_ip_affinity_timeout():
    o = created(svc(ports=P80, sessionAffinity="ClientIP"))
    assert o["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}


def test_defaults_external_name_gets_no_families():
    o = created(svc(type="ExternalName", externalName="example.com"))
    assert "ipFamilies" not in o["spec"] and "ipFamilyPolicy" not in o["spec"]
    assert "internalTrafficPolicy" not in o["spec"]
    assert errors(o) == []


def test_defaults_headless_selectorless_is_dual_stack_required():
    o = created(svc(clusterIP="None", ports=P80))["spec"]
    assert o["ipFamilyPolicy"] == "RequireDualStack" and o["ipFamilies"] == ["IPv4", "IPv6"]
    o = created(svc(clusterIP="None", ports=P80, selector={"a": "b"}))["spec"]
    assert o["ipFamilyPolicy"] == "SingleStack" and o["ipFamilies"] == ["IPv4"]


def test_named_target_port_kept():
    o = created(svc(ports=[{"port": 80, "targetPort": "http"}]))
    assert o["spec"]["ports"][0]["targetPort"] == "http"


def test_wrong_json_type_is_a_bad_request():
    with pytest.raises(StatusError) as e:
        created(svc(ports=[{"port": "80"}]))
    assert e.value.code == 400
    assert "cannot unmarshal string into Go struct field ServicePort.spec.ports.port of type int32" in e.value.message


# -- validation: one rule each ---------------------------------------------------------------

@pytest.mark.parametrize("obj,expected", [
    (svc(), ["spec.ports: Required value"]),
    (svc(ports=[{"port": 0}]), ["spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                                # targetPort defaults to port, so it is refused too (as kube-apiserver does)
                                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive"]),
    (svc(ports=[{"port": 70000, "targetPort": 80}]),
     ["spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"]),
    (svc(ports=[{"port": 80, "targetPort": 70000}]),
     ["spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"]),
    (svc(ports=[{"port": 80, "targetPort": "8080"}]),
     ['spec.ports[0].targetPort: Invalid value: "8080": must contain at least one letter (a-z)']),
    (svc(ports=[{"port": 80, "targetPort": "http--x"}]),
     ['spec.ports[0].targetPort: Invalid value: "http--x": must not contain consecutive hyphens']),
    (svc(ports=[{"port": 80}, {"port": 81}]), ["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"]),
    (svc(ports=[{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]),
     ['spec.ports[1].name: Duplicate value: "a"']),
    (svc(ports=[{"port": 80, "name": "Web"}]),
     ['spec.ports[0].name: Invalid value: "Web": a lowercase RFC 1123 label must consist of lower case '
      "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
      "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]),
    (svc(ports=[{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]),
     ['spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), '
      'Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}']),
    (svc(ports=[{"port": 80, "protocol": "ICMP"}]),
     ['spec.ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"']),
    (svc(ports=[{"port": 80, "nodePort": 30080}]),
     ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]),
    (svc(type="NodePort", ports=[{"port": 80, "name": "a", "nodePort": 30080},
                                 {"port": 81, "name": "b", "nodePort": 30080}]),
     ["spec.ports[1].nodePort: Duplicate value: 30080"]),
    (svc(type="Nodeport", ports=P80),
     ['spec.type: Unsupported value: "Nodeport": supported values: "ClusterIP", "ExternalName", '
      '"LoadBalancer", "NodePort"']),
    (svc(type="ExternalName"), ["spec.externalName: Required value"]),
    (svc(type="ExternalName", externalName="Bad_Name"),
     ['spec.externalName: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case '
      "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
      "'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]),
    (svc(type="ExternalName", externalName="db.example.com", clusterIP="10.96.5.5"),
     ["spec.clusterIPs: Forbidden: may not be set for ExternalName services"]),
    (svc(type="NodePort", clusterIP="None", ports=P80),
     ["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"]),
    (svc(type="LoadBalancer", clusterIP="None", ports=P80),
     ["spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for LoadBalancer services"]),
    (svc(clusterIP="None", ports=[{"port": 80, "nodePort": 30001}]),
     ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]),
    (svc(ports=P80, sessionAffinity="Sticky"),
     ['spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"']),
    (svc(ports=P80, sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}}),
     ["spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400"]),
    (svc(ports=P80, clusterIP="10.96.0.300"),
     ['spec.clusterIPs[0]: Invalid value: "10.96.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)']),
    (svc(ports=P80, clusterIP="10.96.0.5", clusterIPs=["10.96.0.6"]),
     ['spec.clusterIPs: Invalid value: []string{"10.96.0.6"}: first value must match `clusterIP`']),
    (svc(ports=P80, externalIPs=["1.2.3"]),
     ['spec.externalIPs[0]: Invalid value: "1.2.3": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)']),
    (svc(ports=P80, externalIPs=["127.0.0.1"]),
     ['spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)']),
    (svc(ports=P80, externalIPs=["0.0.0.0"]),
     ['spec.externalIPs[0]: Invalid value: "0.0.0.0": may not be unspecified (0.0.0.0)']),
    (svc(ports=P80, externalIPs=["169.254.1.1"]),
     ['spec.externalIPs[0]: Invalid value: "169.254.1.1": may not be in the link-local range (169.254.0.0/16, fe80::/10)']),
    (svc(type="LoadBalancer", ports=P80, loadBalancerSourceRanges=["10.0.0.0/33"]),
     ['spec.LoadBalancerSourceRanges[0]: Invalid value: "10.0.0.0/33": must be a valid CIDR value, '
      "(e.g. 10.9.8.0/24 or 2001:db8::/64)"]),
    (svc(ports=P80, loadBalancerSourceRanges=["10.0.0.0/8"]),
     ["spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'"]),
    (svc(ports=P80, externalTrafficPolicy="Local"),
     ['spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services']),
    (svc(type="NodePort", ports=P80, externalTrafficPolicy="Global"),
     ['spec.externalTrafficPolicy: Unsupported value: "Global": supported values: "Cluster", "Local"']),
    (svc(type="NodePort", ports=P80, healthCheckNodePort=30500),
     ["spec.healthCheckNodePort: Invalid value: 30500: may only be set when `type` is 'LoadBalancer' and "
      "`externalTrafficPolicy` is 'Local'"]),
    (svc(ports=P80, internalTrafficPolicy="Node"),
     ['spec.internalTrafficPolicy: Unsupported value: "Node": supported values: "Cluster", "Local"']),
    (svc(ports=P80, allocateLoadBalancerNodePorts=False),
     ["spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'"]),
    (svc(ports=P80, ipFamilies=["IPv5"]),
     ['spec.ipFamilies[0]: Unsupported value: "IPv5": supported values: "IPv4", "IPv6"']),
    (svc(ports=P80, ipFamilyPolicy="Both"),
     ['spec.ipFamilyPolicy: Unsupported value: "Both": supported values: "PreferDualStack", '
      '"RequireDualStack", "SingleStack"']),
    (svc(ports=P80, selector={"app": "bad value!"}),
     ['spec.selector: Invalid value: "bad value!": a valid label must be an empty string or consist of '
      "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
      "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
      "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]),
])
def test_rule(obj, expected):
    assert errors(obj) == expected


def test_annotations_rules():
    o = svc(ports=P80)
    o["metadata"]["annotations"] = {"service.beta.kubernetes.io/load-balancer-source-ranges": "10.0.0.0/8, x"}
    assert errors(o) == [
        "metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]: Forbidden: may only be "
        "used when `type` is 'LoadBalancer'",
        'metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges]: Invalid value: "x": must '
        "be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]
    o = svc(ports=P80)
    o["metadata"]["annotations"] = {"service.kubernetes.io/topology-aware-hints": "Auto",
                                    "service.kubernetes.io/topology-mode": "Off"}
    assert errors(o) == [
        'metadata.annotations[service.kubernetes.io/topology-mode]: Invalid value: "Off": must match '
        "annotations[service.kubernetes.io/topology-aware-hints] when both are specified"]


def test_tcp_and_udp_may_share_port_and_node_port():
    o = svc(type="NodePort", ports=[{"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
                                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": 30053}])
    assert errors(o) == []


def test_invalid_object_message_as_kubectl_prints_it():
    o = created(svc(ports=[{"port": 0, "targetPort": 80}], sessionAffinity="Sticky"))
    err = invalid_object("Service", "web", S.validate(o))
    assert err.code == 422
    assert err.message == ('Service "web" is invalid: [spec.ports[0].port: Invalid value: 0: must be between 1 and '
                           '65535, inclusive, spec.sessionAffinity: Unsupported value: "Sticky": supported values: '
                           '"ClientIP", "None"]')
    assert [c["field"] for c in err.details["causes"]] == ["spec.ports[0].port", "spec.sessionAffinity"]


# -- updates ---------------------------------------------------------------------------------

def stored(obj: dict, ip: str = "10.96.100.1", node_ports=()) -> dict:
    o = created(obj)
    if o["spec"]["type"] != "ExternalName" and o["spec"].get("clusterIP") != "None":
        o["spec"]["clusterIP"] = o["spec"].get("clusterIP") or ip
        o["spec"]["clusterIPs"] = [o["spec"]["clusterIP"]]
    for p, n in zip(o["spec"].get("ports") or [], node_ports):
        p["nodePort"] = n
    return o


def test_cluster_ip_may_not_change():
    old = stored(svc(ports=P80, clusterIP="10.97.97.97"))
    new = copy.deepcopy(old)
    new["spec"]["clusterIP"] = "10.97.97.98"
    _, errs = updated(old, new)
    assert errs == ['spec.clusterIPs[0]: Invalid value: []string{"10.97.97.98"}: may not change once set']


def test_replace_without_allocated_values_keeps_them():
    old = stored(svc(type="NodePort", ports=[{"port": 80, "name": "http"}]), node_ports=[31000])
    new, errs = updated(old, svc(type="NodePort", ports=[{"port": 80, "name": "http"}]))
    assert errs == []
    assert new["spec"]["clusterIP"] == "10.96.100.1" and new["spec"]["ports"][0]["nodePort"] == 31000


def test_replace_keeps_the_stored_family_policy():
    old = stored(svc(clusterIP="None", ports=P80))  # headless, no selector: RequireDualStack
    new, errs = updated(old, svc(clusterIP="None", ports=P80, selector={"app": "x"}))
    assert errs == [] and new["spec"]["ipFamilyPolicy"] == "RequireDualStack"


def test_to_external_name_wipes_cluster_ip_and_families():
    old = stored(svc(ports=P80))
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ExternalName"
    new["spec"]["externalName"] = "db.example.com"
    new, errs = updated(old, new)
    assert errs == []
    assert not {"clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"} & set(new["spec"])


def test_nodeport_to_clusterip_wipes_node_ports_and_policy():
    old = stored(svc(type="NodePort", ports=P80), node_ports=[31000])
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    new, errs = updated(old, new)
    assert errs == []
    assert "nodePort" not in new["spec"]["ports"][0] and "externalTrafficPolicy" not in new["spec"]


def test_to_clusterip_while_dropping_a_port_wipes_the_rest():
    old = stored(svc(type="NodePort", ports=[{"name": "a", "port": 80}, {"name": "b", "port": 81}]),
                 node_ports=[31000, 31001])
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    del new["spec"]["ports"][1]
    new, errs = updated(old, new)
    assert errs == [] and "nodePort" not in new["spec"]["ports"][0]


def test_to_clusterip_with_a_new_node_port_is_refused():
    old = stored(svc(type="NodePort", ports=P80), node_ports=[31000])
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    new["spec"]["ports"][0]["nodePort"] = 31005
    _, errs = updated(old, new)
    assert errs == ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]


def test_health_check_node_port_is_immutable():
    old = stored(svc(type="LoadBalancer", ports=P80, externalTrafficPolicy="Local", healthCheckNodePort=30500))
    new = copy.deepcopy(old)
    new["spec"]["healthCheckNodePort"] = 30501
    _, errs = updated(old, new)
    assert errs == ["spec.healthCheckNodePort: Forbidden: field is immutable"]


def status_errors(old: dict, status: dict) -> tuple[dict, list[str]]:
    new = copy.deepcopy(old)
    new["status"] = status
    S.prepare_for_status_update(new, old)
    return new, [str(e) for e in S.validate_update(new, old)]


def test_load_balancer_status():
    lb = stored(svc(type="LoadBalancer", ports=P80))
    new, errs = status_errors(lb, {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}})
    assert errs == [] and new["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.10", "ipMode": "VIP"}]
    _, errs = status_errors(lb, {"loadBalancer": {"ingress": [{"ip": "192.0.2.300", "ipMode": "VIP"},
                                                              {"hostname": "1.2.3.4", "ipMode": "Proxy"},
                                                              {"ip": "192.0.2.11", "ipMode": "Direct"}]}})
    assert errs == [
        'status.loadBalancer.ingress[0].ip: Invalid value: "192.0.2.300": must be a valid IP address, '
        "(e.g. 10.9.8.7 or 2001:db8::ffff)",
        "status.loadBalancer.ingress[1].ipMode: Forbidden: may not be specified when `ip` is not set",
        'status.loadBalancer.ingress[1].hostname: Invalid value: "1.2.3.4": must be a DNS name, not an IP address',
        'status.loadBalancer.ingress[2].ipMode: Unsupported value: "Direct": supported values: "Proxy", "VIP"']
    cip = stored(svc(ports=P80))
    _, errs = status_errors(cip, {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}})
    assert errs == ["status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is 'LoadBalancer'"]


def test_status_update_keeps_spec():
    old = stored(svc(type="LoadBalancer", ports=P80))
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    new["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}
    S.prepare_for_status_update(new, old)
    assert new["spec"] == old["spec"] and new["status"]["loadBalancer"]["ingress"][0]["ip"] == "192.0.2.10"
