"""Server-side apply: create, merge by ownership, conflicts worded as kube-apiserver, force, pruning."""

from __future__ import annotations

import copy

import pytest

from kubesvc.objects.apply import parse_apply_body, server_side_apply
from kubesvc.objects.errors import StatusError
from kubesvc.objects.managedfields import update_managed_fields
from kubesvc.objects.registry import by_kind

DEPLOY = by_kind("apps", "Deployment")
SVC = by_kind("", "Service")


def deployment(replicas: int = 1, **labels) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", **labels}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "nginx", "image": "nginx:1"}]}}}}


def managers(obj: dict) -> dict:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields") or []}


def test_apply_creates_with_an_apply_entry():
    out = server_side_apply(None, deployment(), "kubectl", False, DEPLOY)
    entry = managers(out)[("kubectl", "Apply")]
    assert entry["apiVersion"] == "apps/v1"
    fields = entry["fieldsV1"]
    assert fields["f:metadata"] == {"f:labels": {"f:app": {}}}, "applied maps carry no '.' of their own"
    assert fields["f:spec"]["f:selector"] == {}, "label selectors are atomic"
    assert fields["f:spec"]["f:template"]["f:spec"]["f:containers"] == {
        'k:{"name":"nginx"}': {".": {}, "f:image": {}, "f:name": {}}}


def test_conflict_with_client_side_apply_is_worded_as_kube_apiserver():
    live = deployment(1)
    update_managed_fields(None, live, "kubectl-client-side-apply")
    with pytest.raises(StatusError) as e:
        server_side_apply(live, deployment(3), "kubectl", False, DEPLOY)
    err = e.value
    assert (err.code, err.reason) == (409, "Conflict")
    assert err.message == ('Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" '
                           'using apps/v1: .spec.replicas')
    assert err.details["causes"] == [{"reason": "FieldManagerConflict",
                                      "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
                                      "field": ".spec.replicas"}]


def test_several_conflicts_are_listed_per_manager():
    live = deployment(1)
    update_managed_fields(None, live, "kubectl-client-side-apply")
    changed = deployment(3)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    with pytest.raises(StatusError) as e:
        server_side_apply(live, changed, "kubectl", False, DEPLOY)
    assert e.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl-client-side-apply" using apps/v1:\n'
        '- .spec.replicas\n- .spec.template.spec.containers[name="nginx"].image')


def test_force_takes_the_fields_over():
    live = deployment(1)
    update_managed_fields(None, live, "kubectl-client-side-apply")
    out = server_side_apply(live, deployment(3), "kubectl", True, DEPLOY)
    assert out["spec"]["replicas"] == 3
    m = managers(out)
    assert "f:replicas" not in m[("kubectl-client-side-apply", "Update")]["fieldsV1"]["f:spec"]
    assert "f:replicas" in m[("kubectl", "Apply")]["fieldsV1"]["f:spec"]


def test_same_values_are_shared_not_conflicting():
    live = deployment(1)
    update_managed_fields(None, live, "kubectl-client-side-apply")
    out = server_side_apply(live, deployment(1, tier="fe"), "kubectl", False, DEPLOY)
    assert out["metadata"]["labels"] == {"app": "web", "tier": "fe"}
    m = managers(out)
    assert "f:replicas" in m[("kubectl-client-side-apply", "Update")]["fieldsV1"]["f:spec"]
    assert "f:replicas" in m[("kubectl", "Apply")]["fieldsV1"]["f:spec"]


def test_fields_no_longer_applied_are_removed_unless_someone_else_owns_them():
    first = deployment(1, tier="fe")
    first["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox"})
    live = server_side_apply(None, first, "kubectl", False, DEPLOY)
    out = server_side_apply(live, deployment(1), "kubectl", False, DEPLOY)
    assert out["metadata"]["labels"] == {"app": "web"}
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["nginx"]
    # another applier keeps what it owns
    other = server_side_apply(live, {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "metadata": {"name": "web", "labels": {"tier": "fe"}}}, "other", False, DEPLOY)
    out = server_side_apply(other, deployment(1), "kubectl", False, DEPLOY)
    assert out["metadata"]["labels"] == {"app": "web", "tier": "fe"}


def test_ports_merge_by_port_and_protocol():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
           "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}
    live = server_side_apply(None, svc, "kubectl", False, SVC)
    live["spec"]["ports"][0]["protocol"] = "TCP"  # defaulted by the server
    more = copy.deepcopy(svc)
    more["spec"]["ports"].append({"port": 53, "protocol": "UDP"})
    out = server_side_apply(live, more, "kubectl", False, SVC)
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 8080, "protocol": "TCP"},
                                    {"port": 53, "protocol": "UDP"}]
    fields = managers(out)[("kubectl", "Apply")]["fieldsV1"]["f:spec"]["f:ports"]
    assert set(fields) == {'k:{"port":80,"protocol":"TCP"}', 'k:{"port":53,"protocol":"UDP"}'}


@pytest.mark.parametrize("applied,code,message", [
    ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "default"},
      "spec": {"bogus": 1}}, 500,
     "failed to create typed patch object (default/s; /v1, Kind=Service): .spec.bogus: field not declared in schema"),
    ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"targetPort": 80}]}},
     500, "failed to create typed patch object (/s; /v1, Kind=Service): .spec.ports: element 0: associative list "
          "with keys has an element that omits key field \"port\" (and doesn't have default value)"),
    ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 1}, {"port": 1}]}},
     500, "failed to create typed patch object (/s; /v1, Kind=Service): .spec.ports: duplicate entries for key "
          "[port=1,protocol=\"TCP\"]"),
    ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "managedFields": []}}, 400,
     "metadata.managedFields must be nil"),
    ({"apiVersion": "v2", "kind": "Service", "metadata": {"name": "s"}}, 400,
     "Incorrect version specified in apply patch. Specified patch version: v2, expected: v1"),
])
def test_bad_apply_configurations(applied, code, message):
    with pytest.raises(StatusError) as e:
        server_side_apply(None, applied, "kubectl", False, SVC)
    assert (e.value.code, e.value.message) == (code, message)


def test_apply_body_yaml_or_json():
    assert parse_apply_body(b"apiVersion: v1\nkind: ConfigMap\n")["kind"] == "ConfigMap"
    assert parse_apply_body(b'{"kind":"ConfigMap"}')["kind"] == "ConfigMap"
    with pytest.raises(StatusError) as e:
        parse_apply_body(b"[1, 2]")
    assert e.value.code == 400
