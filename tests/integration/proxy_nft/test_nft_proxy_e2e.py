"""`kubesvc proxy --mode nftables` against the real API server, driven by the real kubectl (root).

The seed's path, "client -> NodeIP:NodePort -> ClusterIP:ServicePort -> PodIP:containerPort",
through the nftables data plane: the API server runs in the node namespace of the
proxy engineer's lab, the Service and a manual EndpointSlice are created with
kubectl, curl in the client namespace is the oracle, and `nft list table ip
kube-proxy` shows the service.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.proxy.lab import NODE_IP, ProxyLab, wait_for
from tests.lib.cluster import APIServer

pytestmark = pytest.mark.root

SEED_SVC = """
apiVersion: v1
kind: Service
metadata:
  name: myapp
  namespace: default
spec:
  clusterIP: 10.99.99.99
  type: NodePort
  ports:
  - port: 80
    targetPort: 8080
    nodePort: 30080
"""


def slice_json(ips: list[str]) -> str:
    return json.dumps({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": "myapp-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "myapp"}},
        "ports": [{"port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "nodeName": "node1", "conditions": {"ready": True}} for ip in ips],
    })


def test_seed_nodeport_through_nftables(tmp_path):
    lab = ProxyLab().start()
    api = APIServer(tmp_path / "api", netns=lab.node)
    try:
        api.start()
        log = open(tmp_path / "proxy.log", "ab")
        lab.topo.popen(lab.node, [sys.executable, "-m", "kubesvc.cli", "proxy", "--server", api.url,
                                  "--mode", "nftables", "--node-name", "node1", "--min-sync-period", "100ms",
                                  "--healthz-bind-address", "127.0.0.1:10256",
                                  "--metrics-bind-address", "127.0.0.1:10249"],
                       stdout=log, stderr=subprocess.STDOUT)
        api.kubectl("apply", "-f", "-", input=SEED_SVC)
        api.kubectl("apply", "-f", "-", input=slice_json([p.ip for p in lab.pods]))
        url = f"http://{NODE_IP}:30080/hostname.html"
        all_pods = {p.name for p in lab.pods}
        assert wait_for(lambda: set(lab.names(lab.client, url, 30)) == all_pods, timeout=15), \
            (tmp_path / "proxy.log").read_text()[-3000:]
        assert set(lab.names(lab.node, "http://10.99.99.99/hostname.html", 30)) == all_pods
        assert "proxy mode: nftables" in (tmp_path / "proxy.log").read_text()

        table = lab.topo.run(lab.node, "nft list table ip kube-proxy").stdout
        assert "10.99.99.99 . tcp . 80 : goto service-" in table and "default/myapp/tcp/" in table
        assert "tcp . 30080 : goto external-" in table

        # no endpoints: refused at once, through no-endpoint-nodeports
        api.kubectl("delete", "endpointslice", "myapp-1")
        assert wait_for(lambda: lab.curl(lab.client, url).returncode == 7, timeout=3)
        table = lab.topo.run(lab.node, "nft list table ip kube-proxy").stdout
        assert 'tcp . 30080 comment "default/myapp" : goto reject-chain' in table
    finally:
        api.stop()
        lab.close()
