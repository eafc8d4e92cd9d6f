"""Checks the API server makes with the kinds' schema: unknown fields, type errors, pruning."""

from __future__ import annotations

import pytest

from kubesvc.objects.registry import RESOURCES, by_kind
from kubesvc.objects.schema import (decode_error, kind_schema, prune_unknown, strict_create_error, type_error,
                                    unknown_fields)

SVC = by_kind("", "Service")
DEPLOY = by_kind("apps", "Deployment")


def test_every_served_kind_has_a_schema():
    assert [rt.kind for rt in RESOURCES if kind_schema(rt) is None] == []


def test_unknown_fields_are_named_as_the_strict_decoder_names_them():
    obj = {"apiVersion": "v1", "kind": "Service", "bogus": 1,
           "metadata": {"name": "a", "labels": {"any": "thing"}, "nope": 1},
           "spec": {"foo": 1, "ports": [{"port": 80}, {"port": 81, "bogus": True}], "selector": {"x": "y"}},
           "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "what": 1}]}}}
    assert unknown_fields(obj, SVC) == ["bogus", "metadata.nope", "spec.foo", "spec.ports[1].bogus",
                                        "status.loadBalancer.ingress[0].what"]


def test_free_form_fields_hold_anything():
    obj = {"metadata": {"name": "a", "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {"f:x": {}}}}]}}
    assert unknown_fields(obj, SVC) == []


def test_prune_drops_only_unknown_fields():
    obj = {"metadata": {"name": "a", "nope": 1}, "spec": {"foo": 1, "type": "ClusterIP"}}
    assert prune_unknown(obj, SVC) == {"metadata": {"name": "a"}, "spec": {"type": "ClusterIP"}}


@pytest.mark.parametrize("obj,message", [
    ({"spec": {"replicas": "3"}},
     "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"),
    ({"spec": {"replicas": 1.5}},
     "json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of type int32"),
    ({"spec": "x"}, "json: cannot unmarshal string into Go struct field Deployment.spec of type v1.DeploymentSpec"),
    ({"metadata": {"labels": {"a": 1}}},
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"),
    ({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": 5}]}}}},
     "json: cannot unmarshal number into Go struct field Container.spec.template.spec.containers.image of type string"),
])
def test_type_errors_worded_as_encoding_json(obj, message):
    assert type_error(obj, DEPLOY) == message


def test_well_typed_objects_pass():
    assert type_error({"spec": {"ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8081}],
                                "selector": {"a": "b"}}}, SVC) is None


def test_decode_and_strict_errors():
    e = decode_error(DEPLOY, "json: x")
    assert (e.code, e.message) == (400, 'Deployment in version "v1" cannot be handled as a Deployment: json: x')
    e = strict_create_error(SVC, ["spec.foo", "bar"])
    assert e.message == ('Service in version "v1" cannot be handled as a Service: strict decoding error: '
                         'unknown field "spec.foo", unknown field "bar"')
