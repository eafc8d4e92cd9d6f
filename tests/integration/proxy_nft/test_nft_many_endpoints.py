"""The many-endpoints path of the nftables data plane with traffic (root).

A service with VMAP_MIN_ENDPOINTS or more endpoints spreads through one anonymous
map, `dnat ip addr . port to numgen random mod N map { ... }`, instead of one rule
per endpoint. The threshold is lowered to 2 for this module so the lab's three
pods are "many".
"""

from __future__ import annotations

import pytest

from tests.integration.proxy.lab import ProxyLab
from tests.integration.proxy.harness import start_driver
from tests.integration.proxy.objects import endpoint_slice, service

pytestmark = pytest.mark.root


def test_numgen_map_spreads_over_all_endpoints_and_hairpins(tmp_path):
    lab = ProxyLab().start()
    try:
        feed, _ = start_driver(lab, "nftables", tmp_path / "state.json", env={"KUBESVC_TEST_VMAP_MIN": "2"})
        feed.apply(service("many", "10.96.20.10"), endpoint_slice("many", lab.pods))
        table = lab.topo.run(lab.node, "nft list table ip kube-proxy").stdout
        assert "dnat ip to numgen random mod 3 map { 0 : 10.244.1.10 . 8080, 1 : 10.244.1.11 . 8080, " in table, table
        pods = {p.name for p in lab.pods}
        assert set(lab.names(lab.node, "http://10.96.20.10/hostname.html", 40)) == pods
        assert set(lab.names(lab.pods[0].ns, "http://10.96.20.10/hostname.html", 40)) == pods
    finally:
        lab.close()
