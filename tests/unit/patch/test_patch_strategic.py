"""Strategic merge patch as kube-apiserver applies it (facts from apimachinery's strategicpatch tests)."""

from __future__ import annotations

import json

import pytest

from kubesvc.objects.errors import StatusError
from kubesvc.objects.patch import STRATEGIC, apply_patch
from kubesvc.objects.registry import by_kind

SVC = by_kind("", "Service")
DEPLOY = by_kind("apps", "Deployment")
POD = by_kind("", "Pod")


def smp(obj: dict, patch: dict, rt=SVC) -> dict:
    return apply_patch(STRATEGIC, obj, json.dumps(patch).encode(), rt)


def svc(*ports: dict, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"ports": list(ports), "selector": {"app": "web"}, **spec}}


def test_service_ports_merge_by_port_and_new_ones_lead():
    obj = svc({"port": 80, "targetPort": 8080, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"})
    out = smp(obj, {"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 53, "protocol": "UDP"}]}})
    assert out["spec"]["ports"] == [
        {"port": 80, "targetPort": 9090, "protocol": "TCP"},
        {"port": 53, "protocol": "UDP"},
        {"port": 443, "protocol": "TCP"},
    ]
    assert obj["spec"]["ports"][0]["targetPort"] == 8080, "original must not change"


def test_set_element_order_orders_the_merged_list():
    obj = svc({"port": 80}, {"port": 443})
    out = smp(obj, {"spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 80}, {"port": 8080}],
                             "ports": [{"port": 8080, "name": "alt"}]}})
    assert [p["port"] for p in out["spec"]["ports"]] == [443, 80, 8080]
    assert "$setElementOrder/ports" not in out["spec"]


def test_delete_directive_in_merge_list_removes_by_key():
    # what `kubectl apply` sends when a port was removed from the manifest
    obj = svc({"port": 80}, {"port": 443})
    out = smp(obj, {"spec": {"$setElementOrder/ports": [{"port": 80}], "ports": [{"$patch": "delete", "port": 443}]}})
    assert out["spec"]["ports"] == [{"port": 80}]


def test_replace_directive_in_list_replaces_the_whole_list():
    obj = svc({"port": 80}, {"port": 443})
    out = smp(obj, {"spec": {"ports": [{"port": 1}, {"$patch": "replace"}]}})
    assert out["spec"]["ports"] == [{"port": 1}]


def test_replace_and_delete_directives_on_maps():
    obj = svc({"port": 80})
    assert smp(obj, {"metadata": {"labels": {"$patch": "replace", "tier": "x"}}})["metadata"]["labels"] == {"tier": "x"}
    assert smp(obj, {"spec": {"selector": {"$patch": "delete"}}})["spec"]["selector"] == {}


def test_null_deletes_and_maps_merge():
    obj = svc({"port": 80})
    out = smp(obj, {"metadata": {"labels": {"app": None, "tier": "fe"}}, "spec": {"type": "NodePort"}})
    assert out["metadata"]["labels"] == {"tier": "fe"}
    assert out["spec"]["type"] == "NodePort" and out["spec"]["selector"] == {"app": "web"}


def test_nulls_inside_added_values_are_dropped():
    obj = svc({"port": 80})
    out = smp(obj, {"metadata": {"annotations": {"a": "1", "b": None}}})
    assert out["metadata"]["annotations"] == {"a": "1"}


def test_lists_without_merge_strategy_are_replaced():
    obj = svc({"port": 80}, externalIPs=["192.0.2.1", "192.0.2.2"])
    out = smp(obj, {"spec": {"externalIPs": ["192.0.2.3"]}})
    assert out["spec"]["externalIPs"] == ["192.0.2.3"]


def test_primitive_merge_list_and_delete_from_primitive_list():
    obj = svc({"port": 80})
    obj["metadata"]["finalizers"] = ["a", "b"]
    out = smp(obj, {"metadata": {"finalizers": ["c"]}})
    assert sorted(out["metadata"]["finalizers"]) == ["a", "b", "c"]
    out = smp(obj, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert out["metadata"]["finalizers"] == ["b"]


def test_containers_by_name_env_by_name():
    dep = {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "nginx:1", "env": [{"name": "A", "value": "1"}], "args": ["x", "y"]}]}}}}
    out = smp(dep, {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "nginx:2", "env": [{"name": "B", "value": "2"}], "args": ["z"]}]}}}}, DEPLOY)
    c = out["spec"]["template"]["spec"]["containers"]
    assert len(c) == 1 and c[0]["image"] == "nginx:2"
    assert {e["name"] for e in c[0]["env"]} == {"A", "B"}
    assert c[0]["args"] == ["z"], "args has no merge strategy: replaced"


def test_retain_keys_clears_fields_not_listed():
    dep = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    out = smp(dep, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}, DEPLOY)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_conditions_merge_by_type():
    pod = {"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}}
    out = smp(pod, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, POD)
    assert {c["type"]: c["status"] for c in out["status"]["conditions"]} == {"Ready": "True", "PodScheduled": "True"}


def test_directives_never_stored():
    obj = svc({"port": 80})
    out = smp(obj, {"spec": {"sessionAffinityConfig": {"$patch": "replace", "clientIP": {"timeoutSeconds": 5}}}})
    assert out["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 5}}
    assert "$patch" not in json.dumps(out)


@pytest.mark.parametrize("body,code,reason,message", [
    (b'{"spec":{"ports":[{"name":"x"}]}}', 500, "",
     "map: map[name:x] does not contain declared merge key: port"),
    (b'{"$patch":"foo"}', 500, "", "unknown patch type: foo in map: map[$patch:foo]"),
    (b'{"spec":{"$retainKeys":"x"}}', 400, "BadRequest", "invalid patch format of retainKeys"),
    (b'{"spec":{"ports":[[1]]}}', 500, "", "list element types are not identical: [[map[port:80]] [[1]]]"),
    (b'{"spec":', 400, "BadRequest", "unexpected end of JSON input"),
    (b'[1]', 400, "BadRequest", "json: cannot unmarshal array into Go value of type map[string]interface {}"),
    (b'{x}', 400, "BadRequest", "invalid character 'x' looking for beginning of object key string"),
])
def test_bad_patches_are_refused_as_kube_apiserver_does(body, code, reason, message):
    with pytest.raises(StatusError) as e:
        apply_patch(STRATEGIC, svc({"port": 80}), body, SVC)
    assert (e.value.code, e.value.reason, e.value.message) == (code, reason, message)


def test_lists_of_lists_are_422():
    with pytest.raises(StatusError) as e:
        apply_patch(STRATEGIC, svc(), b'{"spec":{"ports":[[1]]}}', SVC)
    assert (e.value.code, e.value.reason) == (422, "Invalid")
    assert e.value.cause == "lists of lists are not supported"
