"""Objects come back with what kube-apiserver's Go types always serialise (fields
without omitempty), which typed clients such as lightkube require."""

from __future__ import annotations

import json


def test_new_node_carries_daemon_endpoints_and_node_info(apiserver):
    out = apiserver.kubectl("create", "-f", "-", "-o", "json",
                            input="apiVersion: v1\nkind: Node\nmetadata: {name: bare-node}\n").stdout
    node = json.loads(out)
    assert node["spec"] == {}
    assert node["status"]["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 0}}
    info = node["status"]["nodeInfo"]
    assert info["osImage"] == "" and info["kubeletVersion"] == "" and len(info) == 10
    # The printer still shows what is unknown as such.
    wide = apiserver.kubectl("get", "node", "bare-node", "-o", "wide").stdout.splitlines()[1].split()
    assert wide[-3:] == ["<unknown>", "<unknown>", "<unknown>"]
    apiserver.kubectl("delete", "node", "bare-node")


def test_new_replicaset_carries_status_replicas(apiserver):
    rs = ("apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: bare-rs}\nspec:\n  replicas: 0\n"
          "  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n"
          "    spec: {containers: [{name: c, image: x}]}\n")
    out = json.loads(apiserver.kubectl("create", "-f", "-", "-o", "json", input=rs).stdout)
    assert out["status"] == {"replicas": 0}
    apiserver.kubectl("delete", "rs", "bare-rs")
