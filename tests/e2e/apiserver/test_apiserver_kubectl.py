"""The real kubectl against a real kubesvc apiserver: every verb issue 2 lists,
with the output a user sees (tables, yaml/json/jsonpath/name, watch events,
apply's created/unchanged/configured, Kubernetes' error lines)."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time

import pytest

DEPLOY = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: web
      labels: {app: web}
    spec:
      replicas: 2
      selector:
        matchLabels: {app: web}
      template:
        metadata:
          labels: {app: web}
        spec:
          containers:
          - name: web
            image: nginx:1.25
    """)

CM = textwrap.dedent("""\
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: {name}
      labels: {{tier: {tier}}}
    data:
      key: "{value}"
    """)


def pod_yaml(name: str, labels: str = "{app: demo}", node: str | None = None) -> str:
    node_line = f"  nodeName: {node}\n" if node else ""
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {labels}\nspec:\n{node_line}"
            f"  containers:\n  - name: c\n    image: busybox\n")


def get_json(api, *args: str) -> dict:
    return json.loads(api.kubectl("get", *args, "-o", "json").stdout)


def test_api_resources_and_versions(apiserver):
    out = apiserver.kubectl("api-resources").stdout
    for line in ("pods", "po", "services", "svc", "deployments", "deploy", "apps/v1", "endpointslices",
                 "discovery.k8s.io/v1", "replicasets", "rs", "namespaces", "ns", "nodes", "no", "events", "ev",
                 "configmaps", "cm", "endpoints", "ep"):
        assert line in out.split(), line
    assert "Server Version: v1.32" in apiserver.kubectl("version").stdout
    assert "deployments" in apiserver.kubectl("api-resources", "--categories=all", "-o", "name").stdout


def test_system_namespaces_exist(apiserver):
    names = apiserver.kubectl("get", "ns", "-o", "name").stdout.split()
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert f"namespace/{ns}" in names
    ns = get_json(apiserver, "ns", "default")
    assert ns["status"]["phase"] == "Active"
    assert ns["spec"]["finalizers"] == ["kubernetes"]


def test_apply_created_unchanged_configured(apiserver, tmp_path):
    f = tmp_path / "d.yaml"
    f.write_text(DEPLOY)
    assert apiserver.kubectl("apply", "-f", str(f)).stdout.strip() == "deployment.apps/web created"
    assert apiserver.kubectl("apply", "-f", str(f)).stdout.strip() == "deployment.apps/web unchanged"
    f.write_text(DEPLOY.replace("replicas: 2", "replicas: 3"))
    assert apiserver.kubectl("apply", "-f", str(f)).stdout.strip() == "deployment.apps/web configured"
    d = get_json(apiserver, "deploy", "web", "--show-managed-fields")
    # kube-apiserver's defaults
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["strategy"] == {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert d["spec"]["revisionHistoryLimit"] == 10
    assert d["spec"]["progressDeadlineSeconds"] == 600
    pod = d["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Always" and pod["dnsPolicy"] == "ClusterFirst"
    assert pod["terminationGracePeriodSeconds"] == 30 and pod["schedulerName"] == "default-scheduler"
    assert pod["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert d["metadata"]["generation"] == 2
    assert d["metadata"]["uid"] and d["metadata"]["creationTimestamp"].endswith("Z")
    managers = {m["manager"] for m in d["metadata"]["managedFields"]}
    assert "kubectl-client-side-apply" in managers
    apiserver.kubectl("delete", "-f", str(f))


def test_server_side_apply(apiserver, tmp_path):
    f = tmp_path / "cm.yaml"
    f.write_text(CM.format(name="ssa", tier="a", value="1"))
    assert apiserver.kubectl("apply", "--server-side", "-f", str(f)).stdout.strip() == \
        "configmap/ssa serverside-applied"
    f.write_text(CM.format(name="ssa", tier="a", value="2"))
    apiserver.kubectl("apply", "--server-side", "-f", str(f))
    cm = get_json(apiserver, "cm", "ssa", "--show-managed-fields")
    assert cm["data"]["key"] == "2"
    assert any(m["manager"] == "kubectl" and m["operation"] == "Apply" for m in cm["metadata"]["managedFields"])
    apiserver.kubectl("delete", "cm", "ssa")


def test_create_get_output_modes(apiserver, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(pod_yaml("outp"))
    assert apiserver.kubectl("create", "-f", str(f)).stdout.strip() == "pod/outp created"
    err = apiserver.kubectl("create", "-f", str(f), check=False)
    assert err.returncode == 1
    assert 'Error from server (AlreadyExists): error when creating' in err.stderr
    assert 'pods "outp" already exists' in err.stderr
    assert apiserver.kubectl("get", "pod", "outp", "-o", "name").stdout.strip() == "pod/outp"
    assert apiserver.kubectl("get", "pod", "outp", "-o", "jsonpath={.spec.containers[0].image}").stdout == "busybox"
    y = apiserver.kubectl("get", "pod", "outp", "-o", "yaml").stdout
    assert "kind: Pod" in y and "name: outp" in y and "phase: Pending" in y
    p = get_json(apiserver, "pod", "outp")
    assert p["spec"]["restartPolicy"] == "Always"
    assert p["spec"]["serviceAccountName"] == "default"
    assert p["status"]["qosClass"] == "BestEffort"
    table = apiserver.kubectl("get", "pods").stdout.splitlines()
    assert table[0].split()[0] == "NAME"
    assert any(line.split()[0] == "outp" for line in table[1:])
    wide = apiserver.kubectl("get", "pods", "-o", "wide").stdout
    assert "outp" in wide
    all_ns = apiserver.kubectl("get", "pods", "-A").stdout.splitlines()
    assert all_ns[0].split()[0] == "NAMESPACE"
    assert any(line.split()[:2] == ["default", "outp"] for line in all_ns)
    apiserver.kubectl("delete", "pod", "outp")


def test_get_missing_and_bad_namespace(apiserver):
    r = apiserver.kubectl("get", "pod", "nope", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == 'Error from server (NotFound): pods "nope" not found'
    r = apiserver.kubectl("create", "configmap", "x", "-n", "missing-ns", check=False)
    assert r.stderr.strip() == 'error: failed to create configmap: namespaces "missing-ns" not found'
    r = apiserver.kubectl("get", "deploy", "nope", check=False)
    assert r.stderr.strip() == 'Error from server (NotFound): deployments.apps "nope" not found'


def test_label_selectors(apiserver, tmp_path):
    for name, tier in (("sel-a", "front"), ("sel-b", "back"), ("sel-c", "front")):
        apiserver.kubectl("create", "-f", "-", input=CM.format(name=name, tier=tier, value=name))
    names = lambda *a: sorted(apiserver.kubectl("get", "cm", *a, "-o", "name").stdout.split())  # noqa: E731
    assert names("-l", "tier=front") == ["configmap/sel-a", "configmap/sel-c"]
    assert names("-l", "tier!=front,tier") == ["configmap/sel-b"]
    assert names("-l", "tier in (back,nothing)") == ["configmap/sel-b"]
    assert names("-l", "tier notin (front),tier") == ["configmap/sel-b"]
    assert "configmap/sel-a" not in names("-l", "!tier")
    assert names("--field-selector", "metadata.name=sel-b") == ["configmap/sel-b"]
    r = apiserver.kubectl("get", "cm", "--field-selector", "spec.foo=x", check=False)
    assert "field label not supported: spec.foo" in r.stderr
    apiserver.kubectl("delete", "cm", "-l", "tier")
    assert names("-l", "tier") == []


def test_pod_field_selectors(apiserver):
    apiserver.kubectl("create", "-f", "-", input=pod_yaml("fs-1", node="node-a"))
    apiserver.kubectl("create", "-f", "-", input=pod_yaml("fs-2"))
    out = apiserver.kubectl("get", "pods", "--field-selector", "spec.nodeName=node-a", "-o", "name").stdout
    assert out.split() == ["pod/fs-1"]
    out = apiserver.kubectl("get", "pods", "--field-selector", "status.phase=Pending,spec.nodeName!=node-a",
                            "-o", "name").stdout.split()
    assert "pod/fs-2" in out and "pod/fs-1" not in out
    apiserver.kubectl("delete", "pod", "fs-1", "fs-2", "--grace-period=0", "--force")


def test_limit_and_continue(apiserver):
    for i in range(7):
        apiserver.kubectl("create", "configmap", f"page-{i}", "-n", "kube-public")
    # kubectl pages with --chunk-size and must still show everything, in order
    out = apiserver.kubectl("get", "cm", "-n", "kube-public", "--chunk-size=2", "-o", "name").stdout.split()
    assert out == [f"configmap/page-{i}" for i in range(7)]
    raw = json.loads(apiserver.kubectl("get", "--raw", "/api/v1/namespaces/kube-public/configmaps?limit=3").stdout)
    assert len(raw["items"]) == 3 and raw["metadata"]["continue"] and raw["metadata"]["remainingItemCount"] == 4
    apiserver.kubectl("delete", "cm", "--all", "-n", "kube-public")


def test_create_namespace_and_deployment_typed(apiserver):
    # typed commands send protobuf bodies
    assert apiserver.kubectl("create", "namespace", "typed").stdout.strip() == "namespace/typed created"
    assert apiserver.kubectl("create", "deployment", "d1", "--image=nginx", "-n", "typed").stdout.strip() == \
        "deployment.apps/d1 created"
    d = get_json(apiserver, "deploy", "d1", "-n", "typed")
    assert d["spec"]["selector"] == {"matchLabels": {"app": "d1"}}
    assert d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"


def test_label_annotate_scale(apiserver):
    apiserver.kubectl("create", "-f", "-", input=DEPLOY.replace("name: web", "name: las", 1))
    assert apiserver.kubectl("label", "deploy", "las", "env=prod").stdout.strip() == "deployment.apps/las labeled"
    assert apiserver.kubectl("annotate", "deploy", "las", "note=hi").stdout.strip() == \
        "deployment.apps/las annotated"
    assert apiserver.kubectl("scale", "deploy", "las", "--replicas=5").stdout.strip() == "deployment.apps/las scaled"
    d = get_json(apiserver, "deploy", "las")
    assert d["metadata"]["labels"]["env"] == "prod"
    assert d["metadata"]["annotations"]["note"] == "hi"
    assert d["spec"]["replicas"] == 5
    scale = json.loads(apiserver.kubectl("get", "--raw", "/apis/apps/v1/namespaces/default/deployments/las/scale").stdout)
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"]["replicas"] == 5 and scale["status"]["selector"] == "app=web"
    r = apiserver.kubectl("label", "deploy", "las", "env=dev", check=False)
    assert "'env' already has a value (prod), and --overwrite is false" in r.stderr
    apiserver.kubectl("delete", "deploy", "las")


def test_patch_types_and_status(apiserver):
    apiserver.kubectl("create", "-f", "-", input=pod_yaml("patchme"))
    assert apiserver.kubectl("patch", "pod", "patchme", "-p", '{"metadata":{"labels":{"a":"1"}}}').stdout.strip() \
        == "pod/patchme patched"
    apiserver.kubectl("patch", "pod", "patchme", "--type=merge", "-p", '{"metadata":{"labels":{"b":"2"}}}')
    apiserver.kubectl("patch", "pod", "patchme", "--type=json", "-p",
                      '[{"op":"replace","path":"/spec/containers/0/image","value":"alpine"}]')
    apiserver.kubectl("patch", "pod", "patchme", "--subresource=status", "--type=merge", "-p",
                      '{"status":{"phase":"Running","podIP":"10.244.0.5"}}')
    # status is ignored by a main-resource patch
    apiserver.kubectl("patch", "pod", "patchme", "--type=merge", "-p", '{"status":{"phase":"Failed"}}')
    p = get_json(apiserver, "pod", "patchme")
    assert p["metadata"]["labels"] == {"app": "demo", "a": "1", "b": "2"}
    assert p["spec"]["containers"][0]["image"] == "alpine"
    assert p["status"]["phase"] == "Running" and p["status"]["podIP"] == "10.244.0.5"
    out = apiserver.kubectl("get", "pods", "--field-selector", "status.podIP=10.244.0.5", "-o", "name").stdout
    assert out.strip() == "pod/patchme"
    r = apiserver.kubectl("patch", "pod", "patchme", "--type=merge", "-p", '{"spec":{"restartPolicy":"Never"}}',
                          check=False)
    assert "pod updates may not change fields other than" in r.stderr
    apiserver.kubectl("delete", "pod", "patchme")


def test_replace_and_conflict(apiserver):
    apiserver.kubectl("create", "-f", "-", input=CM.format(name="rep", tier="x", value="1"))
    cm = get_json(apiserver, "cm", "rep")
    stale = json.loads(json.dumps(cm))
    cm["data"]["key"] = "2"
    assert apiserver.kubectl("replace", "-f", "-", input=json.dumps(cm)).stdout.strip() == "configmap/rep replaced"
    stale["data"]["key"] = "3"
    r = apiserver.kubectl("replace", "-f", "-", input=json.dumps(stale), check=False)
    assert r.returncode == 1
    assert ('Operation cannot be fulfilled on configmaps "rep": the object has been modified; please apply your '
            'changes to the latest version and try again') in r.stderr
    assert get_json(apiserver, "cm", "rep")["data"]["key"] == "2"
    apiserver.kubectl("delete", "cm", "rep")


def test_edit_with_editor_script(apiserver, tmp_path):
    apiserver.kubectl("create", "-f", "-", input=CM.format(name="ed", tier="x", value="before"))
    script = tmp_path / "editor.sh"
    script.write_text("#!/bin/sh\nsed -i 's/before/after/' \"$1\"\n")
    script.chmod(0o755)
    out = apiserver.kubectl("edit", "cm", "ed", env={"EDITOR": str(script), "KUBE_EDITOR": str(script)}).stdout
    assert out.strip() == "configmap/ed edited"
    assert get_json(apiserver, "cm", "ed")["data"]["key"] == "after"
    apiserver.kubectl("delete", "cm", "ed")


def test_watch_output_watch_events(apiserver):
    import queue
    import threading
    env = {**os.environ, "KUBECONFIG": str(apiserver.kubeconfig)}
    from tests.lib.cluster import kubectl_path
    apiserver.kubectl("create", "configmap", "w0", "-n", "kube-node-lease")
    w = subprocess.Popen([kubectl_path(), "get", "cm", "-n", "kube-node-lease", "-w", "--output-watch-events"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in w.stdout], daemon=True).start()

    def next_line() -> list[str]:
        return lines.get(timeout=20).split()[:2]
    try:
        assert next_line() == ["EVENT", "NAME"]
        assert next_line() == ["ADDED", "w0"]  # the listed object: the watch is running now
        apiserver.kubectl("create", "configmap", "w1", "-n", "kube-node-lease")
        apiserver.kubectl("label", "cm", "w1", "x=y", "-n", "kube-node-lease")
        apiserver.kubectl("delete", "cm", "w1", "w0", "-n", "kube-node-lease")
        got = [next_line() for _ in range(4)]
    finally:
        w.terminate()
        w.wait(timeout=10)
    assert got == [["ADDED", "w1"], ["MODIFIED", "w1"], ["DELETED", "w1"], ["DELETED", "w0"]]


def test_delete_by_file_label_and_wait(apiserver, tmp_path):
    f = tmp_path / "cm.yaml"
    f.write_text(CM.format(name="del-f", tier="d", value="1"))
    apiserver.kubectl("create", "-f", str(f))
    assert apiserver.kubectl("delete", "-f", str(f)).stdout.strip() == 'configmap "del-f" deleted'
    apiserver.kubectl("create", "-f", "-", input=CM.format(name="del-l", tier="gone", value="1"))
    assert apiserver.kubectl("delete", "cm", "-l", "tier=gone", "--wait").stdout.strip() == \
        'configmap "del-l" deleted'
    r = apiserver.kubectl("delete", "cm", "del-l", check=False)
    assert r.stderr.strip() == 'Error from server (NotFound): configmaps "del-l" not found'


def test_pod_graceful_deletion(apiserver):
    # Bound to a node: deletionTimestamp first, gone when the node confirms (grace 0).
    apiserver.kubectl("create", "-f", "-", input=pod_yaml("graceful", node="node-x"))
    apiserver.kubectl("delete", "pod", "graceful", "--wait=false")
    p = get_json(apiserver, "pod", "graceful")
    assert p["metadata"]["deletionTimestamp"] and p["metadata"]["deletionGracePeriodSeconds"] == 30
    apiserver.kubectl("delete", "pod", "graceful", "--grace-period=0", "--force")
    r = apiserver.kubectl("get", "pod", "graceful", check=False)
    assert "not found" in r.stderr
    # Unbound: goes at once.
    apiserver.kubectl("create", "-f", "-", input=pod_yaml("unbound"))
    apiserver.kubectl("delete", "pod", "unbound", "--wait=false")
    assert "not found" in apiserver.kubectl("get", "pod", "unbound", check=False).stderr


def test_pod_grace_period_expires(apiserver):
    apiserver.kubectl("create", "-f", "-", input=pod_yaml("expiring", node="node-y"))
    t0 = time.monotonic()
    apiserver.kubectl("delete", "pod", "expiring", "--grace-period=1", "--timeout=20s")
    assert time.monotonic() - t0 < 15


def test_describe_shows_events(apiserver):
    apiserver.kubectl("create", "-f", "-", input=pod_yaml("desc"))
    uid = get_json(apiserver, "pod", "desc")["metadata"]["uid"]
    ev = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "desc.1", "namespace": "default"},
          "involvedObject": {"kind": "Pod", "name": "desc", "namespace": "default", "uid": uid,
                             "apiVersion": "v1"},
          "reason": "Scheduled", "message": "Successfully assigned default/desc to node-1", "type": "Normal",
          "source": {"component": "default-scheduler"}, "count": 1,
          "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"}
    apiserver.kubectl("create", "-f", "-", input=json.dumps(ev))
    out = apiserver.kubectl("describe", "pod", "desc").stdout
    assert out.splitlines()[0].split() == ["Name:", "desc"]
    assert "Scheduled" in out and "Successfully assigned default/desc to node-1" in out
    apiserver.kubectl("delete", "pod", "desc")


def test_namespace_deletion_removes_content(apiserver):
    apiserver.kubectl("create", "namespace", "doomed")
    apiserver.kubectl("create", "configmap", "c1", "-n", "doomed")
    apiserver.kubectl("create", "-f", "-", input=pod_yaml("p1").replace("name: p1", "name: p1\n  namespace: doomed"))
    assert apiserver.kubectl("delete", "namespace", "doomed", "--timeout=30s").stdout.strip() == \
        'namespace "doomed" deleted'
    assert "not found" in apiserver.kubectl("get", "ns", "doomed", check=False).stderr
    r = apiserver.kubectl("delete", "namespace", "kube-system", check=False)
    assert 'namespaces "kube-system" is forbidden: this namespace may not be deleted' in r.stderr


def test_ownerreference_garbage_collection(apiserver):
    apiserver.kubectl("create", "-f", "-", input=CM.format(name="owner", tier="o", value="1"))
    uid = get_json(apiserver, "cm", "owner")["metadata"]["uid"]
    for name in ("dep-1", "dep-2"):
        child = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": name, "ownerReferences": [
                     {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}}
        apiserver.kubectl("create", "-f", "-", input=json.dumps(child))
    apiserver.kubectl("delete", "cm", "owner", "--cascade=orphan")
    time.sleep(1.5)
    d1 = get_json(apiserver, "cm", "dep-1")
    assert "ownerReferences" not in d1["metadata"]
    # Background: dependents follow their owner.
    apiserver.kubectl("create", "-f", "-", input=CM.format(name="owner2", tier="o", value="1"))
    uid2 = get_json(apiserver, "cm", "owner2")["metadata"]["uid"]
    child = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dep-3", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": uid2}]}}
    apiserver.kubectl("create", "-f", "-", input=json.dumps(child))
    apiserver.kubectl("delete", "cm", "owner2")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if apiserver.kubectl("get", "cm", "dep-3", check=False).returncode != 0:
            break
        time.sleep(0.3)
    else:
        pytest.fail("dependent of a deleted owner was not collected")
    # Foreground: the owner waits for its dependents.
    apiserver.kubectl("create", "-f", "-", input=CM.format(name="owner3", tier="o", value="1"))
    uid3 = get_json(apiserver, "cm", "owner3")["metadata"]["uid"]
    child["metadata"] = {"name": "dep-4", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner3", "uid": uid3}]}
    apiserver.kubectl("create", "-f", "-", input=json.dumps(child))
    apiserver.kubectl("delete", "cm", "owner3", "--cascade=foreground", "--timeout=20s")
    assert apiserver.kubectl("get", "cm", "dep-4", check=False).returncode != 0
    apiserver.kubectl("delete", "cm", "dep-1", "dep-2")


def test_bad_input_is_refused_and_changes_nothing(apiserver):
    long = "a" * 254
    r = apiserver.kubectl("create", "configmap", long, check=False)
    assert f'ConfigMap "{long}" is invalid: metadata.name: Invalid value: "{long}": must be no more than 253 ' \
           f'characters' in r.stderr
    r = apiserver.kubectl("create", "namespace", "Bad_Name", check=False)
    assert ('The Namespace "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 '
            "label must consist of lower case alphanumeric characters or '-'") in r.stderr
    r = apiserver.kubectl("get", "--raw", "/api/v1/namespaces/default/configmaps", check=False)
    assert r.returncode == 0
    before = json.loads(r.stdout)["metadata"]["resourceVersion"]
    r = apiserver.kubectl("create", "--raw", "/api/v1/namespaces/default/configmaps", "-f", "-",
                          input='{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {', check=False)
    assert r.returncode != 0
    r = apiserver.kubectl("create", "--raw", "/api/v1/namespaces/default/services", "-f", "-",
                          input='{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"wrongkind"}}', check=False)
    assert r.returncode != 0
    after = json.loads(apiserver.kubectl("get", "--raw", "/api/v1/namespaces/default/configmaps").stdout)
    assert after["metadata"]["resourceVersion"] == before


def test_unknown_field_under_strict(apiserver, tmp_path):
    from kubesvc.apiserver import openapi
    if not hasattr(openapi, "unknown_fields"):
        pytest.skip("openapi.unknown_fields is not built yet")
    f = tmp_path / "cm.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\nbogus: 1\n")
    r = apiserver.kubectl("create", "-f", str(f), "--validate=strict", check=False)
    assert r.returncode == 1
    assert 'unknown field "bogus"' in r.stderr
    assert apiserver.kubectl("get", "cm", "strict", check=False).returncode == 1


def test_unknown_fields_warned(apiserver, tmp_path):
    f = tmp_path / "cm.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: warned\nbogus: 1\nalso: 2\n")
    r = apiserver.kubectl("create", "-f", str(f), "--validate=warn")
    assert r.stdout.strip() == "configmap/warned created"
    assert 'Warning: unknown field "also"' in r.stderr and 'Warning: unknown field "bogus"' in r.stderr
    assert "bogus" not in apiserver.kubectl("get", "cm", "warned", "-o", "yaml").stdout
    apiserver.kubectl("delete", "cm", "warned")


def test_zz_server_logged_no_tracebacks(apiserver):
    """Runs last in this module: nothing above made the server log an unexpected error."""
    log = (apiserver.data_dir / "apiserver.log").read_text()
    assert "Traceback" not in log, log[-3000:]
