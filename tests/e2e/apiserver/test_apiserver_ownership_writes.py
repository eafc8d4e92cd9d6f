"""A write that changes only field ownership is a write: kube-apiserver stores it, so
kubectl's Apply manager and its client-side to server-side apply upgrade are kept."""

from __future__ import annotations

import textwrap


def managers(api, *what: str) -> list[str]:
    out = api.kubectl("get", *what, "-o", "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation} {end}")
    return sorted(out.stdout.split())


def rv(api, *what: str) -> str:
    return api.kubectl("get", *what, "-o", "jsonpath={.metadata.resourceVersion}").stdout


CM = textwrap.dedent("""\
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: NAME}
    data: {a: b}
    """)


def test_apply_of_live_values_records_the_apply_manager(apiserver):
    # kubectl create, then a server-side apply of the same values: nothing but ownership
    # changes, and kube-apiserver writes it (kubectl becomes an Apply manager).
    apiserver.kubectl("create", "configmap", "own-1", "--from-literal=a=b")
    apiserver.kubectl("apply", "--server-side", "-f", "-", input=CM.replace("NAME", "own-1"))
    assert managers(apiserver, "cm", "own-1") == ["kubectl-create/Update", "kubectl/Apply"]
    # The same apply again is a no-op: no new resourceVersion.
    before = rv(apiserver, "cm", "own-1")
    apiserver.kubectl("apply", "--server-side", "-f", "-", input=CM.replace("NAME", "own-1"))
    assert rv(apiserver, "cm", "own-1") == before
    apiserver.kubectl("delete", "cm", "own-1")


def test_client_side_to_server_side_apply_upgrade(apiserver):
    # kubectl's upgrade is a JSON patch replacing /metadata/managedFields: the
    # client-side manager's fields move to the server-side one.
    apiserver.kubectl("apply", "-f", "-", input=CM.replace("NAME", "own-2"))
    assert managers(apiserver, "cm", "own-2") == ["kubectl-client-side-apply/Update"]
    apiserver.kubectl("apply", "--server-side", "-f", "-", input=CM.replace("NAME", "own-2"))
    got = managers(apiserver, "cm", "own-2")
    assert "kubectl/Apply" in got and "kubectl-client-side-apply/Update" not in got
    apiserver.kubectl("delete", "cm", "own-2")


def endpoint_addresses(api) -> tuple[str, str]:
    ep = api.kubectl("get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].addresses[0].ip}").stdout
    es = api.kubectl("get", "endpointslice", "kubernetes", "-o", "jsonpath={.endpoints[0].addresses[0]}").stdout
    return ep, es
