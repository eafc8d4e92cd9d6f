"""managedFields kept as kube-apiserver's field manager keeps them (FieldsV1, Update ownership)."""

from __future__ import annotations

import copy

from kubesvc.objects.managedfields import decode_fields, encode_fields, path_string, update_managed_fields


def service() -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}], "selector": {"app": "web"},
                     "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"},
            "status": {"loadBalancer": {}}}


def test_create_records_what_kubectl_client_side_apply_owns():
    svc = service()
    update_managed_fields(None, svc, "kubectl-client-side-apply")
    [entry] = svc["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl-client-side-apply" and entry["operation"] == "Update"
    assert entry["apiVersion"] == "v1" and entry["fieldsType"] == "FieldsV1" and entry["time"].endswith("Z")
    # the same shape a real cluster shows for `kubectl apply -f service.yaml`
    assert entry["fieldsV1"] == {
        "f:metadata": {
            "f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}},
            "f:labels": {".": {}, "f:app": {}},
        },
        "f:spec": {
            "f:internalTrafficPolicy": {},
            "f:ports": {".": {}, 'k:{"port":80,"protocol":"TCP"}': {
                ".": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}},
            "f:selector": {},
            "f:sessionAffinity": {},
            "f:type": {},
        },
    }


def test_update_moves_changed_fields_to_the_new_manager():
    old = service()
    update_managed_fields(None, old, "kubectl-client-side-apply")
    new = copy.deepcopy(old)
    new["spec"]["ports"][0]["targetPort"] = 9090
    new["metadata"]["labels"]["tier"] = "fe"
    update_managed_fields(old, new, "kubectl-patch")
    by = {e["manager"]: e["fieldsV1"] for e in new["metadata"]["managedFields"]}
    port = 'k:{"port":80,"protocol":"TCP"}'
    assert by["kubectl-patch"] == {"f:metadata": {"f:labels": {"f:tier": {}}},
                                   "f:spec": {"f:ports": {port: {"f:targetPort": {}}}}}
    assert "f:targetPort" not in by["kubectl-client-side-apply"]["f:spec"]["f:ports"][port]
    assert [e["manager"] for e in new["metadata"]["managedFields"]] == ["kubectl-client-side-apply", "kubectl-patch"]


def test_removed_fields_leave_every_manager_and_noops_keep_the_time():
    old = service()
    update_managed_fields(None, old, "a")
    t = old["metadata"]["managedFields"][0]["time"]
    same = copy.deepcopy(old)
    update_managed_fields(old, same, "b")
    assert [e["manager"] for e in same["metadata"]["managedFields"]] == ["a"]
    assert same["metadata"]["managedFields"][0]["time"] == t
    new = copy.deepcopy(old)
    del new["metadata"]["labels"]
    update_managed_fields(old, new, "b")
    assert "f:labels" not in new["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"]


def test_status_updates_own_status_only_and_main_updates_ignore_status():
    old = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 1}}
    update_managed_fields(None, old, "kubectl-create")
    new = copy.deepcopy(old)
    new["status"] = {"replicas": 1}
    update_managed_fields(old, new, "kube-controller-manager", subresource="status")
    entries = {e["manager"]: e for e in new["metadata"]["managedFields"]}
    assert entries["kube-controller-manager"]["subresource"] == "status"
    assert entries["kube-controller-manager"]["fieldsV1"] == {"f:status": {"f:replicas": {}}}
    assert "f:status" not in entries["kubectl-create"]["fieldsV1"]


def test_request_managed_fields_are_trusted_and_empty_list_resets():
    old = service()
    update_managed_fields(None, old, "kubectl-client-side-apply")
    new = copy.deepcopy(old)
    new["metadata"]["managedFields"][0]["manager"] = "kubectl"
    new["metadata"]["managedFields"][0]["operation"] = "Apply"
    update_managed_fields(old, new, "kubectl")
    assert [(e["manager"], e["operation"]) for e in new["metadata"]["managedFields"]] == [("kubectl", "Apply")]
    reset = copy.deepcopy(old)
    reset["metadata"]["managedFields"] = []
    update_managed_fields(old, reset, "x")
    assert "managedFields" not in reset["metadata"]


def test_fieldsv1_round_trip_and_paths():
    f = {"f:spec": {"f:ports": {".": {}, 'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}}}},
         "f:metadata": {"f:finalizers": {".": {}, 'v:"x"': {}}}}
    s = decode_fields(f)
    assert encode_fields(s) == {"f:metadata": f["f:metadata"], "f:spec": f["f:spec"]}
    assert path_string(("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}', "f:port")) == \
        '.spec.ports[port=80,protocol="TCP"].port'
    assert path_string(("f:metadata", "f:finalizers", 'v:"x"')) == '.metadata.finalizers[="x"]'


def test_scale_subresource_owns_replicas_and_takes_them_from_the_creator():
    old = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "b"}},
           "spec": {"replicas": 1}, "status": {"replicas": 1}}
    update_managed_fields(None, old, "kubectl-create")
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 4
    new["status"]["replicas"] = 2
    update_managed_fields(old, new, "kubectl-scale", subresource="scale")
    entries = {e["manager"]: e for e in new["metadata"]["managedFields"]}
    assert entries["kubectl-scale"]["subresource"] == "scale"
    assert entries["kubectl-scale"]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:spec" not in entries["kubectl-create"]["fieldsV1"]
