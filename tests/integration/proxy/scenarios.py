"""Scenarios every data plane passes the same way, on objects.standard_world (root).

A data plane's test module subclasses StandardWorld (as `TestStandardWorld`) beside its
own module-scoped `env` fixture, (lab, feed, proxy) from harness.fed_lab, and may
change the budget (the ipvs VM runs under software emulation: fewer connections,
looser timings) or extend a scenario with its own oracle (nft list, ipvsadm).
"""

from __future__ import annotations

import sys
import time

from tests.integration.proxy.lab import NODE_IP, wait_for
from tests.integration.proxy.objects import endpoint_slice

ALL = {"pod0", "pod1", "pod2"}


class StandardWorld:
    """curl's view of the standard world: spreading, NodePort, externalIP/LB IP, affinity, refusal, UDP."""

    SPREAD = 40               # fresh connections that must reach every endpoint
    PIN = 15                  # connections that must all land on one endpoint under ClientIP affinity
    REFUSAL_SECONDS = 1.0     # a service without endpoints answers at once (no silent drop)
    UDP_TIMEOUT = 2

    def test_clusterip_from_node_spreads_over_all_endpoints(self, env):
        lab, _, _ = env
        assert set(lab.names(lab.node, "http://10.96.10.10/hostname.html", self.SPREAD)) == ALL

    def test_clusterip_from_a_pod_including_itself(self, env):
        lab, _, _ = env
        assert set(lab.names(lab.pods[0].ns, "http://10.96.10.10/hostname.html", self.SPREAD)) == ALL

    def test_nodeport_from_client(self, env):
        lab, _, _ = env
        assert set(lab.names(lab.client, f"http://{NODE_IP}:30080/hostname.html", self.SPREAD)) == ALL

    def test_external_ip_and_loadbalancer_ip_from_client(self, env):
        lab, _, _ = env
        assert set(lab.names(lab.client, "http://203.0.113.10/hostname.html", self.SPREAD)) == ALL
        assert set(lab.names(lab.client, "http://198.51.100.7/hostname.html", self.SPREAD)) == ALL

    def test_client_ip_affinity_pins(self, env):
        lab, _, _ = env
        got = lab.names(lab.client, f"http://{NODE_IP}:30082/", self.PIN)
        assert len(got) == self.PIN and len(set(got)) == 1
        got = lab.names(lab.node, "http://10.96.10.12/", self.PIN)
        assert len(got) == self.PIN and len(set(got)) == 1

    def test_no_endpoints_is_refused_at_once(self, env):
        lab, _, _ = env
        for ns, url in ((lab.node, "http://10.96.10.13/"), (lab.client, f"http://{NODE_IP}:30083/")):
            t0 = time.monotonic()
            r = lab.curl(ns, url)
            took = time.monotonic() - t0
            # 7 = failed to connect (refused); a silent drop would end in 28 at curl's --max-time 3
            assert r.returncode == 7, (url, r.returncode, r.stderr)
            assert took < self.REFUSAL_SECONDS

    def test_udp_service(self, env):
        lab, _, _ = env
        code = (f"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout({self.UDP_TIMEOUT}); "
                "s.sendto(b'q', ('10.96.10.14', 53)); print(s.recvfrom(100)[0].decode().strip())")
        r = lab.topo.run(lab.pods[1].ns, f"{sys.executable} -c \"{code}\"", check=False)
        assert r.stdout.strip() == "pod0", r.stderr


def endpoint_removal_within_2s(lab, feed, also=None) -> None:
    """Remove pod2 from web: gone from new connections within 2 s of the change; `also()` may check the
    data plane's own view before pod2 is put back (not a StandardWorld test: ipvs drains instead)."""
    p0, p1, p2 = lab.pods
    t0 = time.monotonic()
    feed.apply(endpoint_slice("web", [p0, p1]))
    assert wait_for(lambda: "pod2" not in lab.names(lab.node, "http://10.96.10.10/", 12), timeout=2)
    assert time.monotonic() - t0 < 2.0
    assert set(lab.names(lab.client, f"http://{NODE_IP}:30080/", 30)) == {"pod0", "pod1"}
    if also is not None:
        also()
    feed.apply(endpoint_slice("web", [p0, p1, p2]))
    assert set(lab.names(lab.node, "http://10.96.10.10/", 40)) == ALL
