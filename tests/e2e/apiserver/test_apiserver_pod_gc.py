"""Graceful deletion of a bound pod: the API server waits for a Ready node's agent to
confirm; only a pod on a missing or not-Ready node is removed on grace expiry."""

from __future__ import annotations

import json
import textwrap


def _node_ready(api, name: str, status: str) -> None:
    cond = {"status": {"conditions": [{"type": "Ready", "status": status, "reason": "KubeletReady"}]}}
    api.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(cond))


def test_bound_pod_waits_for_a_ready_node_to_confirm(apiserver):
    import time
    apiserver.kubectl("create", "-f", "-", input="apiVersion: v1\nkind: Node\nmetadata: {name: gc-node}\n")
    _node_ready(apiserver, "gc-node", "True")
    apiserver.kubectl("create", "-f", "-", input=textwrap.dedent("""\
        apiVersion: v1
        kind: Pod
        metadata: {name: gc-pod}
        spec:
          nodeName: gc-node
          containers: [{name: c, image: busybox}]
        """))
    apiserver.kubectl("delete", "pod", "gc-pod", "--grace-period=1", "--wait=false")
    time.sleep(3)
    # Past its grace period, but the node's agent is alive and has not confirmed: still there.
    pod = json.loads(apiserver.kubectl("get", "pod", "gc-pod", "-o", "json").stdout)
    assert pod["metadata"]["deletionTimestamp"]
    # The node stops being Ready: the pod GC removes the pod.
    _node_ready(apiserver, "gc-node", "False")
    apiserver.kubectl("wait", "--for=delete", "pod/gc-pod", "--timeout=15s")
    apiserver.kubectl("delete", "node", "gc-node")
