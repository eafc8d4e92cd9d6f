"""The built-in default/kubernetes Endpoints and EndpointSlice carry the address
kube-apiserver would advertise, and follow it across restarts."""

from __future__ import annotations

import pytest


def endpoint_addresses(api) -> tuple[str, str]:
    ep = api.kubectl("get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].addresses[0].ip}").stdout
    es = api.kubectl("get", "endpointslice", "kubernetes", "-o", "jsonpath={.endpoints[0].addresses[0]}").stdout
    return ep, es


def test_kubernetes_endpoints_follow_the_advertise_address(tmp_path):
    from tests.lib.cluster import APIServer
    api = APIServer(tmp_path / "adv", extra_args=("--advertise-address", "192.0.2.77")).start()
    try:
        assert endpoint_addresses(api) == ("192.0.2.77", "192.0.2.77")
        # A restart with another address rewrites them (kube-apiserver's endpoint reconciler).
        api.stop()
        api.extra_args = ("--advertise-address", "192.0.2.78")
        api.start()
        assert endpoint_addresses(api) == ("192.0.2.78", "192.0.2.78")
        # Without one, a loopback listener advertises its loopback address.
        api.stop()
        api.extra_args = ()
        api.start()
        assert endpoint_addresses(api) == ("127.0.0.1", "127.0.0.1")
    finally:
        api.stop()


def test_wildcard_listener_advertises_a_host_address():
    # `--listen 0.0.0.0:P` must not put 0.0.0.0 in the kubernetes Endpoints.
    from kubesvc.apiserver.app import Config, advertise_address
    got = advertise_address(Config(data_dir="", host="0.0.0.0"))
    assert got != "0.0.0.0" and got.count(".") == 3
    assert advertise_address(Config(data_dir="", host="0.0.0.0", advertise_address="192.0.2.5")) == "192.0.2.5"


@pytest.mark.root
def test_wildcard_listener_in_a_node_namespace_advertises_the_node_address(tmp_path):
    # `--listen 0.0.0.0:P` on a "node" (a throw-away namespace with one address):
    # the kubernetes Endpoints show that address, never 0.0.0.0.
    from tests.lib.cluster import APIServer
    from tests.lib.netns import Topology
    with Topology() as topo:
        node, peer = topo.ns("node"), topo.ns("peer")
        topo.veth(node, "192.168.77.2/24", peer, "192.168.77.1/24")
        api = APIServer(tmp_path / "wild", netns=node, host="192.168.77.2").start()
        try:
            assert endpoint_addresses(api) == ("192.168.77.2", "192.168.77.2")
        finally:
            api.stop()
