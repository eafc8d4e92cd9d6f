"""Service traffic through the iptables and userspace data planes, in throw-away namespaces (root).

A node namespace with three pods behind a bridge and a client namespace beside
it (lab.py); the proxy runs inside the node namespace. What is asserted is what
users see: curl answers (pod names, the source address a pod sees), refusals,
timings, and iptables-save.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.integration.proxy.lab import CLIENT_IP, NODE_IP, UDP_LOOP, ProxyLab
from tests.integration.proxy.harness import DriverProxy, fed_lab
from tests.integration.proxy.objects import endpoint_slice, service
from tests.integration.proxy.scenarios import ALL, StandardWorld, endpoint_removal_within_2s

pytestmark = pytest.mark.root


@pytest.fixture(scope="module", params=["iptables", "userspace"])
def env(request, tmp_path_factory):
    with fed_lab(request.param, tmp_path_factory.mktemp("proxy") / "state.json") as env:
        yield env


class TestStandardWorld(StandardWorld):
    """The scenarios all data planes share, as the iptables and userspace modes pass them."""


def test_endpoint_removal_takes_effect_within_2s(env):
    lab, feed, _ = env
    endpoint_removal_within_2s(lab, feed)


def test_external_traffic_policy_local(env):
    lab, feed, proxy = env
    p0, p1, p2 = lab.pods
    p2.node = "node2"  # pod2's endpoint now says it runs on another node
    try:
        feed.apply(service("local", "10.96.10.15", type="NodePort", node_port=30085, etp="Local"),
                   endpoint_slice("local", [p0, p1, p2]))
        got = set(lab.names(lab.client, f"http://{NODE_IP}:30085/", 30))
        assert got == {"pod0", "pod1"}
        # the pod sees the client's own address (iptables: no masquerade under policy Local;
        # userspace: the relay connects from the client's address)
        assert {lab.curl(lab.client, f"http://{NODE_IP}:30085/ip").stdout.strip() for _ in range(4)} == {CLIENT_IP}
        # and under policy Cluster it sees the node's
        assert lab.curl(lab.client, f"http://{NODE_IP}:30080/ip").stdout.strip() != CLIENT_IP
        # a pod on this node reaching the Local NodePort is answered too (the endpoint
        # cannot answer a pod's own address past the node: no client address kept there)
        assert lab.curl(p0.ns, f"http://{NODE_IP}:30085/").stdout.strip() in {"pod0", "pod1"}
    finally:
        p2.node = "node1"


def _kube_rules(lab: ProxyLab) -> str:
    out = lab.topo.run(lab.node, "iptables-save").stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith("#"))


def test_kill9_keeps_traffic_and_restart_keeps_rules(env):
    lab, feed, proxy = env
    before = _kube_rules(lab)
    size = 64 * 65536  # 64 chunks, one per 50 ms: ~3 s
    dl = subprocess.Popen(["ip", "netns", "exec", lab.client, "curl", "-s", "-o", "/dev/null", "-w",
                           "%{size_download}", "--max-time", "20", f"http://{NODE_IP}:30080/slow/{size}"],
                          stdout=subprocess.PIPE, text=True)
    time.sleep(0.7)
    proxy.kill9()
    if proxy.mode == "iptables":
        out, _ = dl.communicate(timeout=20)
        assert dl.returncode == 0 and int(out) == size  # the kernel carried it without the proxy
        assert _kube_rules(lab) == before
    else:
        dl.communicate(timeout=20)  # relayed by the dead process: it cannot complete
    proxy.start()
    feed.flush()
    assert _kube_rules(lab) == before or proxy.mode == "userspace"
    assert set(lab.names(lab.client, f"http://{NODE_IP}:30080/", 40)) == ALL


HALF_CLOSE = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"GET /bytes/3000000 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
s.shutdown(socket.SHUT_WR)  # half-close: we are done sending, the answer must still come
data = b""
while chunk := s.recv(1 << 16):
    data += chunk
print(len(data.partition(b"\\r\\n\\r\\n")[2]))
"""


def test_half_close_and_connection_close_load(env):
    lab, _, proxy = env
    r = lab.topo.run(lab.client, f"{sys.executable} -c '{HALF_CLOSE}' {NODE_IP} 30080", check=False)
    assert r.stdout.strip() == "3000000", r.stderr
    # connection-close load passes every EOF through the relay (uvloop write_eof crash guard)
    out = lab.topo.run(lab.client, f"wrk -t1 -c64 -d3s -H 'Connection: close' http://{NODE_IP}:30080/",
                       check=False).stdout
    done = int(out.split(" requests in ")[0].split()[-1])
    assert done > 1000, out
    assert proxy.proc.poll() is None, "the proxy died under connection-close load"
    assert set(lab.names(lab.client, f"http://{NODE_IP}:30080/", 30)) == ALL




def test_udp_flow_follows_a_moved_endpoint(env):
    """DNS must not black-hole after the DNS pod moves: stale UDP conntrack entries are cleared."""
    lab, feed, _ = env
    p0, p1, p2 = lab.pods
    loop = subprocess.Popen(["ip", "netns", "exec", p1.ns, sys.executable, "-c", UDP_LOOP, "4", "0.2"],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    feed.apply(endpoint_slice("dns", [p2], protocol="UDP"))
    answers = loop.communicate(timeout=10)[0].split()
    try:
        assert answers[0] == "pod0"
        assert answers[-5:] == ["pod2"] * 5, answers
    finally:
        feed.apply(endpoint_slice("dns", [p0], protocol="UDP"))


def test_health_check_node_port_and_source_ranges(env):
    lab, feed, proxy = env
    p0, p1, p2 = lab.pods
    hc = f"http://{NODE_IP}:32100/healthz"
    lb = service("hc", "10.96.10.16", type="LoadBalancer", node_port=30086, lb_ip="198.51.100.9", etp="Local",
                 hc_port=32100)
    feed.apply(lb, endpoint_slice("hc", [p0, p1]))
    r = lab.curl(lab.client, hc, "-w", "' %{http_code}'")
    assert r.stdout.endswith(" 200") and '"localEndpoints":2' in r.stdout, r.stdout
    p0.node = p1.node = "node2"
    try:
        feed.apply(endpoint_slice("hc", [p0, p1]))
        r = lab.curl(lab.client, hc, "-w", "' %{http_code}'")
        assert r.stdout.endswith(" 503") and '"localEndpoints":0' in r.stdout, r.stdout
    finally:
        p0.node = p1.node = "node1"
    if proxy.mode == "iptables":
        # loadBalancerSourceRanges: the client's network is allowed, then it is not
        lb["spec"]["loadBalancerSourceRanges"] = ["192.168.50.0/24"]
        feed.apply(lb, endpoint_slice("hc", [p0, p1]))
        assert lab.curl(lab.client, "http://198.51.100.9/").stdout.strip() in ("pod0", "pod1")
        lb["spec"]["loadBalancerSourceRanges"] = ["10.1.0.0/16"]
        feed.apply(lb)
        # not accepted: dropped by KUBE-PROXY-FIREWALL, or (as here, where the node has no
        # route for the LB address itself) unreachable once it is not DNATed
        assert lab.curl(lab.client, "http://198.51.100.9/", timeout=1).returncode in (7, 28)
    feed.delete("Service", "hc")


def test_switching_mode_removes_the_other_modes_rules(env):
    lab, feed, proxy = env
    other = DriverProxy(lab, "userspace" if proxy.mode == "iptables" else "iptables", proxy.state)
    proxy.kill9()
    other.start()
    try:
        feed.flush()
        rules = _kube_rules(lab)
        if other.mode == "iptables":
            assert "KUBE-PORTALS" not in rules
        else:
            assert "KUBE-SVC-" not in rules and "KUBE-SEP-" not in rules and "-j KUBE-POSTROUTING" not in rules
        assert set(lab.names(lab.node, "http://10.96.10.10/", 30)) == ALL
        assert set(lab.names(lab.client, f"http://{NODE_IP}:30080/", 30)) == ALL
    finally:
        other.kill9()
        proxy.start()
        feed.flush()
