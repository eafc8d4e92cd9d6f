"""Label and field selectors parse and match as Kubernetes' labels/fields packages do."""

from __future__ import annotations

import pytest

from kubesvc.objects.errors import StatusError
from kubesvc.objects.selectors import (
    from_label_selector, parse_field_selector, parse_label_selector, selector_from_set,
)

L = {"app": "web", "tier": "front", "ver": "3"}


@pytest.mark.parametrize("text,want", [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app!=web", False),
    ("app=db", False),
    ("app in (db,web)", True),
    ("app notin (db,web)", False),
    ("app notin (db)", True),
    ("missing notin (x)", True),
    ("missing!=x", True),
    ("app", True),
    ("!app", False),
    ("!missing", True),
    ("ver>2", True),
    ("ver<3", False),
    ("app=web,tier=front", True),
    ("app=web,tier=back", False),
    ("app in (web), !missing, ver > 1", True),
    ("app=", False),
])
def test_label_selector(text, want):
    assert parse_label_selector(text).matches(L) is want


@pytest.mark.parametrize("text", ["app in web", "=x", "app=web,,", "ver>x", "a b"])
def test_label_selector_errors(text):
    with pytest.raises(StatusError) as err:
        parse_label_selector(text)
    assert err.value.code == 400
    assert err.value.message.startswith("unable to parse requirement")


def test_label_selector_dicts():
    assert from_label_selector({"matchLabels": {"app": "web"}}).matches(L)
    assert not from_label_selector(None).matches(L)
    assert from_label_selector({}).matches(L)
    sel = from_label_selector({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]},
                                                    {"key": "x", "operator": "DoesNotExist"}]})
    assert sel.matches(L) and not sel.matches({"tier": "front", "x": "1"})
    assert str(selector_from_set({"b": "2", "a": "1"})) == "a=1,b=2"


POD = {"metadata": {"name": "p", "namespace": "ns"},
       "spec": {"nodeName": "n1", "restartPolicy": "Always", "hostNetwork": False},
       "status": {"phase": "Running", "podIP": "10.244.0.3", "podIPs": [{"ip": "10.244.0.3"}]}}


@pytest.mark.parametrize("text,want", [
    ("metadata.name=p", True),
    ("metadata.namespace!=ns", False),
    ("spec.nodeName=n1,status.phase=Running", True),
    ("spec.nodeName=", False),
    ("spec.hostNetwork=false", True),
    ("status.podIP==10.244.0.3", True),
    ("spec.restartPolicy!=Never", True),
])
def test_pod_field_selector(text, want):
    assert parse_field_selector(text, "Pod").matches(POD) is want


def test_field_selector_unknown_field():
    with pytest.raises(StatusError) as err:
        parse_field_selector("spec.nodeName=x", "ConfigMap")
    assert err.value.message == "field label not supported: spec.nodeName"


def test_event_field_selector():
    ev = {"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p", "uid": "u1",
                                                        "namespace": "default"}}
    fs = parse_field_selector("involvedObject.name=p,involvedObject.namespace=default,involvedObject.kind=Pod,"
                              "involvedObject.uid=u1", "Event")
    assert fs.matches(ev)
