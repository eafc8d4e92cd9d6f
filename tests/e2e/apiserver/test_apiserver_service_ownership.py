"""Service fields set by the REST storage (ipFamilies, ipFamilyPolicy, clusterIPs)
belong to no manager, as in kube-apiserver."""

from __future__ import annotations

import json


def test_service_ip_families_belong_to_no_manager(apiserver):
    # kube-apiserver sets ipFamilies/ipFamilyPolicy (and clusterIPs) in the REST storage,
    # after the field manager: the creator owns the decoder's defaults, not those.
    apiserver.kubectl("create", "service", "clusterip", "fam", "--tcp=80")
    svc = json.loads(apiserver.kubectl("get", "svc", "fam", "-o", "json", "--show-managed-fields").stdout)
    assert svc["spec"]["ipFamilies"] == ["IPv4"] and svc["spec"]["ipFamilyPolicy"] == "SingleStack"
    [entry] = svc["metadata"]["managedFields"]
    spec_fields = entry["fieldsV1"]["f:spec"]
    assert "f:ipFamilies" not in spec_fields and "f:ipFamilyPolicy" not in spec_fields
    assert "f:clusterIPs" not in spec_fields and "f:clusterIP" not in spec_fields
    for owned in ("f:type", "f:sessionAffinity", "f:internalTrafficPolicy", "f:ports", "f:selector"):
        assert owned in spec_fields, owned
    apiserver.kubectl("delete", "svc", "fam")
