"""Name and label rules with Kubernetes' messages."""

from __future__ import annotations

from kubesvc.objects.meta import (
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name, validate_object_meta,
)


def test_subdomain():
    assert is_dns1123_subdomain("a.b-c") == []
    errs = is_dns1123_subdomain("a" * 254)
    assert errs == ["must be no more than 253 characters"]
    assert is_dns1123_subdomain("Bad")[0].startswith("a lowercase RFC 1123 subdomain must consist of")


def test_label_and_1035():
    assert is_dns1123_label("1abc") == []
    assert is_dns1035_label("1abc")[0] == (
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
        "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
        "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
    assert is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]


def test_qualified_names():
    assert is_qualified_name("example.com/my-key") == []
    assert is_qualified_name("a/b/c")[0].endswith("with an optional DNS subdomain prefix and '/' "
                                                  "(e.g. 'example.com/MyName')")
    assert is_qualified_name("/x") == ["prefix part must be non-empty"]


def test_object_meta():
    obj = {"metadata": {"name": "ok", "labels": {"bad key": "v"}}}
    errs = validate_object_meta(obj, "ConfigMap", True)
    assert [str(e).split(":")[0] for e in errs] == ["metadata.namespace", "metadata.labels"]
    assert str(validate_object_meta({"metadata": {}}, "Pod", False)[0]) == \
        "metadata.name: Required value: name or generateName is required"
