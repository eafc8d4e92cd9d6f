"""`kubesvc proxy --mode nftables` against the real API server, driven by the real kubectl (root).

The seed's path, "client -> NodeIP:NodePort -> ClusterIP:ServicePort -> PodIP:containerPort",
through the nftables data plane: the API server runs in the node namespace of the
proxy engineer's lab, the Service and a manual EndpointSlice are created with
kubectl, curl in the client namespace is the oracle, and `nft list table ip
kube-proxy` shows the service.
"""

from __future__ import annotations

import pytest

from tests.integration.proxy.harness import kubesvc_proxy
from tests.integration.proxy.lab import NODE_IP, ProxyLab, wait_for
from tests.integration.proxy.objects import SEED_SVC, seed_slice
from tests.lib.cluster import APIServer

pytestmark = pytest.mark.root


def test_seed_nodeport_through_nftables(tmp_path):
    lab = ProxyLab().start()
    api = APIServer(tmp_path / "api", netns=lab.node)
    try:
        api.start()
        log = open(tmp_path / "proxy.log", "ab")
        kubesvc_proxy(lab, api.url, "nftables", log)
        api.kubectl("apply", "-f", "-", input=SEED_SVC)
        api.kubectl("apply", "-f", "-", input=seed_slice([p.ip for p in lab.pods]))
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
