"""Patches, apply (client- and server-side) and OpenAPI as the real kubectl uses them."""

from __future__ import annotations

import json

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: web, tier: fe}
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 8080
  - name: https
    port: 443
    targetPort: 8443
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: nginx
        image: nginx
"""


def get(apiserver, *args: str) -> dict:
    return json.loads(apiserver.kubectl("get", *args, "-o", "json").stdout)


def test_apply_reapply_unchanged_then_configured_removes_what_the_manifest_dropped(apiserver):
    assert apiserver.kubectl("apply", "-f", "-", input=SERVICE).stdout.strip() == "service/web created"
    assert apiserver.kubectl("apply", "-f", "-", input=SERVICE).stdout.strip() == "service/web unchanged"
    smaller = SERVICE.replace("  - name: https\n    port: 443\n    targetPort: 8443\n", "") \
                     .replace(", tier: fe", "")
    assert apiserver.kubectl("apply", "-f", "-", input=smaller).stdout.strip() == "service/web configured"
    svc = get(apiserver, "svc", "web")
    assert [p["port"] for p in svc["spec"]["ports"]] == [80]
    assert svc["metadata"]["labels"] == {"app": "web"}
    assert apiserver.kubectl("apply", "-f", "-", input=smaller).stdout.strip() == "service/web unchanged"


def test_kubectl_patch_all_three_types(apiserver):
    apiserver.kubectl("apply", "-f", "-", input=SERVICE.replace("name: web", "name: patched", 1))
    # strategic merge: service ports merge by port
    out = apiserver.kubectl("patch", "svc", "patched", "-p",
                            '{"spec":{"ports":[{"port":80,"targetPort":9090}]}}').stdout
    assert out.strip() == "service/patched patched"
    ports = {p["port"]: p["targetPort"] for p in get(apiserver, "svc", "patched")["spec"]["ports"]}
    assert ports == {80: 9090, 443: 8443}
    # $patch: delete removes one port by its merge key
    apiserver.kubectl("patch", "svc", "patched", "-p", '{"spec":{"ports":[{"$patch":"delete","port":443}]}}')
    assert [p["port"] for p in get(apiserver, "svc", "patched")["spec"]["ports"]] == [80]
    # JSON merge patch: null deletes
    apiserver.kubectl("patch", "svc", "patched", "--type=merge", "-p",
                      '{"metadata":{"labels":{"tier":null,"team":"a"}}}')
    assert get(apiserver, "svc", "patched")["metadata"]["labels"] == {"app": "web", "team": "a"}
    # JSON patch, with a test that holds and one that does not
    apiserver.kubectl("patch", "svc", "patched", "--type=json", "-p",
                      '[{"op":"test","path":"/metadata/labels/team","value":"a"},'
                      '{"op":"replace","path":"/metadata/labels/team","value":"b"}]')
    assert get(apiserver, "svc", "patched")["metadata"]["labels"]["team"] == "b"
    p = apiserver.kubectl("patch", "svc", "patched", "--type=json", "-p",
                          '[{"op":"test","path":"/metadata/labels/team","value":"zzz"},'
                          '{"op":"remove","path":"/metadata/labels/team"}]', check=False)
    assert p.returncode == 1
    assert "The request is invalid: the server rejected our request due to an error in our request" in p.stderr
    assert get(apiserver, "svc", "patched")["metadata"]["labels"]["team"] == "b"
    # a strategic merge patch without the merge key
    p = apiserver.kubectl("patch", "svc", "patched", "-p", '{"spec":{"ports":[{"name":"x"}]}}', check=False)
    assert p.returncode == 1
    assert "map: map[name:x] does not contain declared merge key: port" in p.stderr


def test_server_side_apply_creates_conflicts_and_forces(apiserver):
    out = apiserver.kubectl("apply", "--server-side", "-f", "-",
                            input=DEPLOYMENT.format(name="ssa", replicas=1)).stdout
    assert out.strip() == "deployment.apps/ssa serverside-applied"
    dep = get(apiserver, "deploy", "ssa", "--show-managed-fields")
    entry = next(e for e in dep["metadata"]["managedFields"] if e["manager"] == "kubectl")
    assert entry["operation"] == "Apply"
    containers = entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert containers == {'k:{"name":"nginx"}': {".": {}, "f:image": {}, "f:name": {}}}
    # client-side apply owns replicas; a server-side apply changing it conflicts
    apiserver.kubectl("apply", "-f", "-", input=DEPLOYMENT.format(name="csa", replicas=1))
    p = apiserver.kubectl("apply", "--server-side", "-f", "-",
                          input=DEPLOYMENT.format(name="csa", replicas=3), check=False)
    assert p.returncode == 1
    assert ('error: Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: '
            '.spec.replicas') in p.stderr
    assert get(apiserver, "deploy", "csa")["spec"]["replicas"] == 1
    out = apiserver.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                            input=DEPLOYMENT.format(name="csa", replicas=3)).stdout
    assert out.strip() == "deployment.apps/csa serverside-applied"
    assert get(apiserver, "deploy", "csa")["spec"]["replicas"] == 3


def test_server_side_apply_removes_fields_it_no_longer_applies(apiserver):
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa-cm\ndata:\n  a: '1'\n  b: '2'\n"
    apiserver.kubectl("apply", "--server-side", "-f", "-", input=cm)
    apiserver.kubectl("apply", "--server-side", "-f", "-", input=cm.replace("  b: '2'\n", ""))
    assert get(apiserver, "cm", "ssa-cm")["data"] == {"a": "1"}


def test_unknown_fields_are_refused_by_the_server_and_nothing_is_stored(apiserver):
    bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndata: {a: b}\nbogus: 1\n"
    p = apiserver.kubectl("apply", "-f", "-", input=bad, check=False)
    assert p.returncode == 1
    assert 'strict decoding error: unknown field "bogus"' in p.stderr
    assert "error validating" not in p.stderr, "kubectl must leave validation to the server"
    assert apiserver.kubectl("get", "cm", "bad", check=False).returncode == 1
    svc = SERVICE.replace("name: web", "name: nested", 1).replace("    targetPort: 8080\n",
                                                                  "    targetPort: 8080\n    bogus: x\n")
    p = apiserver.kubectl("create", "-f", "-", input=svc, check=False)
    assert p.returncode == 1
    assert 'unknown field "spec.ports[0].bogus"' in p.stderr
    assert apiserver.kubectl("get", "svc", "nested", check=False).returncode == 1


def test_kubectl_explain_reads_the_openapi_v3_schema(apiserver):
    out = apiserver.kubectl("explain", "svc.spec").stdout
    assert "KIND:       Service" in out
    assert "FIELD: spec <ServiceSpec>" in out
    for field in ("clusterIP", "ports", "selector", "type"):
        assert f"  {field}\t<" in out, field
    out = apiserver.kubectl("explain", "deployment.spec.strategy").stdout
    assert "rollingUpdate" in out


def test_kubectl_explain_openapi_v2_protobuf(apiserver):
    out = apiserver.kubectl("explain", "svc.spec.ports", "--output=plaintext-openapiv2").stdout
    assert "RESOURCE: ports <[]Object>" in out
    assert "port\t<integer> -required-" in out


def test_managed_fields_look_like_a_real_clusters(apiserver):
    apiserver.kubectl("apply", "-f", "-", input=SERVICE.replace("name: web", "name: owned", 1))
    svc = get(apiserver, "svc", "owned", "--show-managed-fields")
    [entry] = svc["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"], entry["apiVersion"]) == ("kubectl-client-side-apply", "Update", "v1")
    f = entry["fieldsV1"]
    assert f["f:metadata"]["f:labels"] == {".": {}, "f:app": {}, "f:tier": {}}
    assert f["f:metadata"]["f:annotations"] == {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}
    assert f["f:spec"]["f:selector"] == {}, "a service selector is an atomic map"
    assert f["f:spec"]["f:ports"]['k:{"port":80,"protocol":"TCP"}'] == {
        ".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}
    assert "f:clusterIP" not in f["f:spec"], "allocated by the server, owned by no one"
    # another manager takes over what it changes
    apiserver.kubectl("label", "svc", "owned", "tier=be", "--overwrite")
    entries = {e["manager"]: e for e in get(apiserver, "svc", "owned", "--show-managed-fields")["metadata"]
               ["managedFields"]}
    assert entries["kubectl-label"]["fieldsV1"] == {"f:metadata": {"f:labels": {"f:tier": {}}}}
    assert "f:tier" not in entries["kubectl-client-side-apply"]["fieldsV1"]["f:metadata"]["f:labels"]
    # without --show-managed-fields kubectl hides them
    assert "managedFields" not in get(apiserver, "svc", "owned")["metadata"]
