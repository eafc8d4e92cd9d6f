"""Protobuf request bodies decode to the JSON the same object would have been.

The fixtures are what the real kubectl sent (captured by capture_fixtures.py);
each .json beside a .pb is kubectl's own --dry-run=client -o json of the command.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubesvc.apiserver import protobuf
from kubesvc.objects.errors import StatusError

FIXTURES = Path(__file__).parent / "fixtures"
CAPTURED = sorted(p.stem for p in FIXTURES.glob("*.pb") if p.with_suffix(".json").exists())


def _drop_nulls(v):
    # Go's JSON writes a zero metav1.Time as null; the decoder leaves it out
    if isinstance(v, dict):
        return {k: _drop_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_nulls(x) for x in v]
    return v


@pytest.mark.parametrize("name", CAPTURED)
def test_kubectl_body_decodes_to_its_json(name):
    body = (FIXTURES / f"{name}.pb").read_bytes()
    assert body.startswith(b"k8s\x00")
    want = _drop_nulls(json.loads((FIXTURES / f"{name}.json").read_text()))
    assert protobuf.decode(body) == want


def test_captured_fixtures_cover_the_typed_commands():
    assert {"namespace", "deployment", "service_clusterip", "service_nodeport", "service_loadbalancer",
            "service_externalname", "service_headless", "configmap"} <= set(CAPTURED)


def test_explicit_zero_replicas_is_kept():
    obj = protobuf.decode((FIXTURES / "deployment_zero.pb").read_bytes())
    assert obj["spec"]["replicas"] == 0


def test_seed_nodeport_and_headless_services():
    np = protobuf.decode((FIXTURES / "service_nodeport.pb").read_bytes())
    assert np["spec"]["type"] == "NodePort"
    assert np["spec"]["ports"] == [{"name": "80-80", "protocol": "TCP", "port": 80, "targetPort": 80,
                                    "nodePort": 30080}]
    headless = protobuf.decode((FIXTURES / "service_headless.pb").read_bytes())
    assert headless["spec"]["clusterIP"] == "None"


def test_binary_configmap_is_base64():
    obj = protobuf.decode((FIXTURES / "configmap_binary.pb").read_bytes())
    import base64
    assert base64.b64decode(obj["binaryData"]["blob.bin"]) == bytes(range(256))


POD = {
    "kind": "Pod", "apiVersion": "v1",
    "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"},
                 "creationTimestamp": "2019-04-07T08:51:30Z", "deletionGracePeriodSeconds": 0,
                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc",
                                      "uid": "1234", "controller": True, "blockOwnerDeletion": True}]},
    "spec": {
        "volumes": [{"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420}},
                    {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
        "containers": [{
            "name": "web", "image": "nginx", "command": ["nginx"], "args": ["-g", "daemon off;"],
            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
            "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}}],
            "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}},
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                               "periodSeconds": 5, "failureThreshold": 3},
            "livenessProbe": {"tcpSocket": {"port": 80}, "initialDelaySeconds": 1},
            "securityContext": {"privileged": False, "runAsUser": 0},
        }],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
        "nodeName": "node01", "enableServiceLinks": True,
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 300}],
    },
    "status": {
        "phase": "Running", "hostIP": "192.168.1.10", "podIP": "10.244.1.38", "podIPs": [{"ip": "10.244.1.38"}],
        "startTime": "2019-04-07T08:51:31Z", "qosClass": "Burstable",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2019-04-07T08:51:40Z"}],
        "containerStatuses": [{
            "name": "web", "ready": False, "restartCount": 0, "image": "nginx", "imageID": "", "started": False,
            "state": {"running": {"startedAt": "2019-04-07T08:51:35Z"}},
            "lastState": {"terminated": {"exitCode": 0, "reason": "Completed",
                                         "finishedAt": "2019-04-07T08:51:34Z"}},
        }],
    },
}

NODE = {
    "kind": "Node", "apiVersion": "v1",
    "metadata": {"name": "node01", "labels": {"kubernetes.io/hostname": "node01"}},
    "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"],
             "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
    "status": {
        "capacity": {"cpu": "2", "memory": "4038360Ki", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "lastHeartbeatTime": "2026-11-26T10:00:00Z"}],
        "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname", "address": "node01"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.1.0",
                     "osImage": "Debian GNU/Linux 12 (bookworm)", "containerRuntimeVersion": "kubesvc://0.1.0",
                     "kubeletVersion": "v1.32.0", "kubeProxyVersion": "", "operatingSystem": "linux",
                     "architecture": "amd64"},
    },
}

OTHERS = [
    {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "kube-system"},
     "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}},
    {"kind": "Endpoints", "apiVersion": "v1", "metadata": {"name": "myapp", "namespace": "default"},
     "subsets": [{"addresses": [{"ip": "10.244.1.38", "nodeName": "node01",
                                 "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "default"}}],
                  "notReadyAddresses": [{"ip": "10.244.2.30"}],
                  "ports": [{"port": 80, "protocol": "TCP"}]}]},
    {"kind": "Event", "apiVersion": "v1", "metadata": {"name": "web-1.17", "namespace": "default"},
     "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default"}, "reason": "Started",
     "message": "Started container web", "source": {"component": "kubelet", "host": "node01"},
     "firstTimestamp": "2026-11-26T10:00:00Z", "lastTimestamp": "2026-11-26T10:00:05Z", "count": 2,
     "type": "Normal", "eventTime": "2026-11-26T10:00:00.123456Z", "reportingComponent": "",
     "reportingInstance": ""},
    {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c", "namespace": "default"},
     "immutable": False, "data": {"a": "1"}},
    {"kind": "Service", "apiVersion": "v1", "metadata": {"name": "lb", "namespace": "default"},
     "spec": {"type": "LoadBalancer", "clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5"],
              "ports": [{"port": 80, "targetPort": "http", "nodePort": 31000, "protocol": "TCP"}],
              "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
              "externalTrafficPolicy": "Local", "healthCheckNodePort": 32000, "ipFamilies": ["IPv4"],
              "ipFamilyPolicy": "SingleStack", "allocateLoadBalancerNodePorts": False,
              "internalTrafficPolicy": "Cluster"},
     "status": {"loadBalancer": {"ingress": [{"ip": "172.18.255.1", "ipMode": "VIP"}]}}},
    {"kind": "ReplicaSet", "apiVersion": "apps/v1",
     "metadata": {"name": "web-abc", "namespace": "default", "generation": 3},
     "spec": {"replicas": 3, "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
              "template": {"metadata": {"labels": {"app": "web"}},
                           "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
     "status": {"replicas": 0, "observedGeneration": 3}},
    {"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "web", "namespace": "default"},
     "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}},
                           "spec": {"containers": [{"name": "web", "image": "nginx"}]}},
              "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}},
              "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600},
     "status": {"replicas": 3, "readyReplicas": 2, "conditions": [
         {"type": "Available", "status": "True", "lastUpdateTime": "2026-11-26T10:00:00Z"}]}},
    {"kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
     "metadata": {"name": "node01", "namespace": "kube-node-lease"},
     "spec": {"holderIdentity": "node01", "leaseDurationSeconds": 40,
              "renewTime": "2026-11-26T10:00:00.500000Z", "leaseTransitions": 0}},
    {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "web", "namespace": "default"},
     "spec": {"replicas": 5}, "status": {"replicas": 0, "selector": "app=web"}},
    {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "idle", "namespace": "default"},
     "spec": {"replicas": 0}},
    {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0, "propagationPolicy": "Foreground",
     "preconditions": {"uid": "1234"}, "dryRun": ["All"]},
    {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "volumes", "namespace": "default"},
     "spec": {"containers": [{"name": "c", "image": "busybox"}], "volumes": [
         {"name": "repo", "gitRepo": {"repository": "https://example.com/r.git"}},
         {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {
             "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
             "storageClassName": "fast"}}}},
         {"name": "lun", "iscsi": {"targetPortal": "10.0.0.1:3260", "iqn": "iqn.2001-04.com.example:disk", "lun": 0}},
         {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token",
                                                                               "expirationSeconds": 3600}}]}},
     ]}},
    {"kind": "Binding", "apiVersion": "v1", "metadata": {"name": "web-1", "namespace": "default"},
     "target": {"kind": "Node", "name": "node01", "apiVersion": "v1"}},
]


@pytest.mark.parametrize("obj", [POD, NODE, *OTHERS], ids=lambda o: o["kind"])
def test_round_trip(obj):
    assert protobuf.decode(protobuf.encode(obj)) == obj


def test_every_registry_kind_has_a_message():
    from kubesvc.objects import registry
    for r in registry.RESOURCES:
        assert (r.api_version, r.kind) in protobuf.schema.KINDS, r.kind


def test_unknown_fields_are_skipped_as_kube_apiserver_does(caplog):
    body = protobuf.encode({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "x"}})
    # append field 99 (varint 7) to the inner object: re-wrap by hand via the envelope class
    env = protobuf.message_class("runtime.Unknown")()
    env.ParseFromString(body[4:])
    env.raw += bytes([0x98, 0x06, 0x07])  # tag (99 << 3 | 0) as varint, value 7
    assert protobuf.decode(b"k8s\x00" + env.SerializeToString()) == {
        "kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "x"}}
    assert "unknown field" in caplog.text


def _error(body: bytes, kind: str | None = "Namespace") -> StatusError:
    with pytest.raises(StatusError) as e:
        protobuf.decode(body, kind)
    assert e.value.code == 400 and e.value.reason == "BadRequest"
    return e.value


def test_missing_magic_is_bad_request():
    err = _error(b'{"kind":"Namespace"}')
    assert err.message == ('the object provided is unrecognized (must be of type Namespace): provided data does '
                           'not appear to be a protobuf message, expected prefix [107 56 115 0] '
                           '({"kind":"Namespace"})')


def test_truncated_body_is_bad_request():
    body = (FIXTURES / "deployment.pb").read_bytes()
    err = _error(body[:60], "Deployment")
    assert "must be of type Deployment" in err.message or "cannot be handled as a Deployment" in err.message


def test_unregistered_kind_is_bad_request():
    env = protobuf.message_class("runtime.Unknown")()
    env.typeMeta.apiVersion, env.typeMeta.kind = "v1", "Widget"
    err = _error(b"k8s\x00" + env.SerializeToString())
    assert err.message.startswith('Widget in version "v1" cannot be handled as a Namespace: '
                                  'no kind "Widget" is registered for version "v1"')


def test_garbage_inner_message_is_bad_request():
    env = protobuf.message_class("runtime.Unknown")()
    env.typeMeta.apiVersion, env.typeMeta.kind = "v1", "Namespace"
    env.raw = b"\x0a\xff\xff\xff"  # field 1, length far past the end
    err = _error(b"k8s\x00" + env.SerializeToString())
    assert err.message.startswith('Namespace in version "v1" cannot be handled as a Namespace: ')


def test_is_protobuf_content_type():
    assert protobuf.is_protobuf("application/vnd.kubernetes.protobuf")
    assert protobuf.is_protobuf("application/vnd.kubernetes.protobuf; charset=utf-8")
    assert not protobuf.is_protobuf("application/json")
    assert not protobuf.is_protobuf(None)


from hypothesis import given, settings, strategies as st  # noqa: E402


def _wrap(kind_api: tuple[str, str], raw: bytes) -> bytes:
    env = protobuf.message_class("runtime.Unknown")()
    env.typeMeta.apiVersion, env.typeMeta.kind = kind_api
    env.raw = raw
    return b"k8s\x00" + env.SerializeToString()


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(protobuf.schema.KINDS)), raw=st.binary(max_size=200))
def test_any_garbage_is_an_object_or_a_bad_request(kind, raw):
    try:
        obj = protobuf.decode(_wrap(kind, raw))
    except StatusError as e:
        assert e.code == 400
    else:
        assert obj["kind"] == kind[1]


@settings(max_examples=100, deadline=None)
@given(seconds=st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1))
def test_any_timestamp_decodes_or_is_refused(seconds):
    meta = protobuf.message_class("meta.ObjectMeta")()
    meta.name = "x"
    meta.creationTimestamp.seconds = seconds
    ns = protobuf.message_class("core.Namespace")()
    ns.metadata.CopyFrom(meta)
    try:
        protobuf.decode(_wrap(("v1", "Namespace"), ns.SerializeToString()))
    except StatusError as e:
        assert e.code == 400
