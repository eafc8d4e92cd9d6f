"""Deleting a namespace releases its services' ClusterIPs and NodePorts at once
(the namespace controller deletes them through the service registry)."""

from __future__ import annotations

SVC = """\
apiVersion: v1
kind: Service
metadata: {name: held, namespace: NS}
spec:
  type: NodePort
  clusterIP: 10.97.1.1
  ports: [{port: 80, nodePort: 30777}]
"""


def test_namespace_deletion_releases_cluster_ip_and_node_port(apiserver):
    apiserver.kubectl("create", "namespace", "holder")
    apiserver.kubectl("create", "-f", "-", input=SVC.replace("NS", "holder"))
    taken = apiserver.kubectl("create", "-f", "-", input=SVC.replace("NS", "default"), check=False)
    assert "provided IP is already allocated" in taken.stderr
    apiserver.kubectl("delete", "namespace", "holder", "--timeout=30s")
    # No restart: the same address and port are free again.
    apiserver.kubectl("create", "-f", "-", input=SVC.replace("NS", "default"))
    out = apiserver.kubectl("get", "svc", "held", "--no-headers").stdout.split()
    assert out[1:5] == ["NodePort", "10.97.1.1", "<none>", "80:30777/TCP"]
    apiserver.kubectl("delete", "svc", "held")
