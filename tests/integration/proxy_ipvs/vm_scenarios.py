"""Service traffic through the ipvs data plane — run inside the IPVS VM (test_ipvs_in_vm.py).

The same namespace lab as the iptables/userspace tests (tests/integration/proxy/lab.py):
a node namespace with three pods behind a bridge and a client namespace beside
it; the ipvs data plane runs inside the node namespace (IPVS tables, kube-ipvs0,
ipsets and iptables are all per namespace). Oracles: curl answers, the source
address a pod sees, refusals and their timing, and `ipvsadm -Ln` / `ipvsadm -Sn`,
`ip addr show kube-ipvs0`, `ipset list`, `iptables-save`.

Not collected by a plain `pytest` run (the file name does not start with test_);
it skips itself unless KUBESVC_IN_IPVS_VM=1 (set by the outer test).
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from tests.integration.proxy.lab import CLIENT_IP, NODE_IP, UDP_LOOP, ProxyLab, wait_for
from tests.integration.proxy.harness import fed_lab
from tests.integration.proxy.objects import FileFeed, endpoint_slice, service
from tests.integration.proxy.scenarios import ALL, StandardWorld

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.environ.get("KUBESVC_IN_IPVS_VM") != "1",
                                 reason="runs inside the IPVS VM only (tests/integration/proxy_ipvs/test_ipvs_in_vm.py)")]


class SlowFeed(FileFeed):
    """FileFeed with room for software emulation: a Python start in the VM takes many seconds."""

    def flush(self, timeout: float = 120) -> float:
        return super().flush(timeout)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    subprocess.run(["modprobe", "br_netfilter"], check=False)
    with fed_lab("ipvs", tmp_path_factory.mktemp("ipvs") / "state.json", SlowFeed) as (lab, feed, proxy):
        yield lab, feed, proxy
        print("---- proxy log ----\n" + proxy.log()[-4000:], file=sys.stderr)


def ipvsadm(lab: ProxyLab, *args: str) -> str:
    return lab.topo.run(lab.node, "ipvsadm " + " ".join(args)).stdout


def test_ipvsadm_lists_the_services(env):
    lab, _, _ = env
    out = ipvsadm(lab, "-Ln")
    blocks = {m.group(1): m.group(0) for m in re.finditer(r"^(?:TCP|UDP)\s+(\S+) .*\n(?:  ->.*\n?)*", out, re.M)}
    web = blocks["10.96.10.10:80"]
    assert web.split("\n")[0].split()[2] == "rr"
    for ip in ("10.244.1.10", "10.244.1.11", "10.244.1.12"):
        assert re.search(rf"-> {ip}:8080\s+Masq\s+1\s", web), web
    for addr in (f"{NODE_IP}:30080", "203.0.113.10:80", "198.51.100.7:80", f"{NODE_IP}:30081"):
        assert addr in blocks, (addr, out)
    assert "persistent 600" in blocks["10.96.10.12:80"]
    assert "->" not in blocks["10.96.10.13:80"].split("\n", 1)[1]  # no endpoints, no real servers
    assert re.search(r"^UDP\s+10\.96\.10\.14:53 rr\s*\n\s+-> 10\.244\.1\.10:8080\s+Masq", out, re.M), out
    addrs = lab.topo.run(lab.node, "ip -o addr show dev kube-ipvs0").stdout
    for ip in ("10.96.10.10", "10.96.10.14", "203.0.113.10", "198.51.100.7"):
        assert f" {ip}/32 " in addrs, addrs
    assert NODE_IP not in addrs
    sets = lab.topo.run(lab.node, "ipset list KUBE-CLUSTER-IP").stdout
    assert "10.96.10.10,tcp:80" in sets and "10.96.10.14,udp:53" in sets
    assert "30080" in lab.topo.run(lab.node, "ipset list KUBE-NODE-PORT-TCP").stdout
    nat = lab.topo.run(lab.node, "iptables-save -t nat").stdout
    assert ('-A KUBE-SERVICES ! -s 10.244.0.0/16 -m comment --comment "Kubernetes service cluster ip + port for '
            'masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ') in nat, nat
    assert "KUBE-SVC-" not in nat  # no per-service chains in ipvs mode


class TestStandardWorld(StandardWorld):
    """The scenarios all data planes share, through IPVS, on the emulated VM's budget."""

    SPREAD = 6
    PIN = 8
    # IPVS refuses with ICMP port unreachable; the bound on time is loose: a curl start
    # alone takes a second or more under emulation.
    REFUSAL_SECONDS = 2.9
    UDP_TIMEOUT = 3


def test_other_ports_on_a_service_address_are_refused(env):
    """KUBE-IPVS-FILTER: a ClusterIP on kube-ipvs0 must not expose the node's own ports."""
    lab, _, _ = env
    argv = (["busybox", "httpd", "-f", "-p", "8999", "-h", "/tmp"] if shutil.which("busybox")
            else [sys.executable, "-m", "http.server", "--bind", "0.0.0.0", "8999"])
    srv = lab.topo.popen(lab.node, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: lab.curl(lab.node, "http://127.0.0.1:8999/").returncode != 7, timeout=120)
        assert lab.curl(lab.pods[1].ns, "http://10.96.10.10:8999/").returncode == 7  # REJECT: refused
        assert lab.curl(lab.pods[1].ns, f"http://{NODE_IP}:8999/").returncode != 7
    finally:
        srv.kill()


def test_source_ranges_and_the_nodes_own_access_to_an_lb_ip(env):
    """loadBalancerSourceRanges through IPVS: a client outside the ranges is dropped
    (KUBE-SOURCE-RANGES-FIREWALL), and the node itself reaches the LB IP only when the
    ranges cover its address (KUBE-IPVS-OUT-FILTER, kube-proxy 1.30+)."""
    lab, feed, _ = env
    p0, p1, _ = lab.pods
    lb = service("fw", "10.96.10.18", type="LoadBalancer", node_port=30088, lb_ip="198.51.100.8")
    lb["spec"]["loadBalancerSourceRanges"] = [f"{CLIENT_IP}/32"]
    feed.apply(lb, endpoint_slice("fw", [p0, p1]))
    try:
        assert lab.curl(lab.client, "http://198.51.100.8/").stdout.strip() in ("pod0", "pod1")
        flt = lab.topo.run(lab.node, "iptables-save -t filter").stdout
        out_rule = r"^-A KUBE-IPVS-OUT-FILTER -s 198\.51\.100\.8(/32)? -m ipvs .*--vport 80 -j DROP$"
        assert re.search(out_rule, flt, re.M), flt
        assert f"198.51.100.8,tcp:80,{CLIENT_IP}" in ipset_save(lab)
        assert lab.curl(lab.node, "http://198.51.100.8/", timeout=2).returncode != 0  # the node: not in range
        lb["spec"]["loadBalancerSourceRanges"] = [f"{CLIENT_IP}/32", f"{NODE_IP}/32"]
        feed.apply(lb)
        assert "-A KUBE-IPVS-OUT-FILTER" not in lab.topo.run(lab.node, "iptables-save -t filter").stdout
        assert "198.51.100.8,tcp:80,198.51.100.8" in ipset_save(lab)  # KUBE-LOAD-BALANCER-SOURCE-IP
        assert lab.curl(lab.node, "http://198.51.100.8/").stdout.strip() in ("pod0", "pod1")
        lb["spec"]["loadBalancerSourceRanges"] = ["10.1.0.0/16"]
        feed.apply(lb)
        assert lab.curl(lab.client, "http://198.51.100.8/", timeout=2).returncode != 0  # dropped
    finally:
        feed.delete("Service", "fw")
        feed.delete("EndpointSlice", "fw-abc")


def ipset_save(lab: ProxyLab) -> str:
    return lab.topo.run(lab.node, "ipset save").stdout


def test_endpoint_removal_takes_effect_once_programmed(env):
    """Natively the iptables tests hold this to 2 s; here Python runs under software emulation, so
    the sync gets more room, and what is asserted is that the very next connections avoid pod2."""
    lab, feed, _ = env
    p0, p1, p2 = lab.pods
    feed.slices["web-abc"] = endpoint_slice("web", [p0, p1])
    took = feed.flush()
    print(f"endpoint removal programmed in {took:.2f}s (emulated)")
    assert took < 15
    assert "pod2" not in lab.names(lab.node, "http://10.96.10.10/", 6)
    assert set(lab.names(lab.client, f"http://{NODE_IP}:30080/", 6)) == {"pod0", "pod1"}
    # the removed real server drains (weight 0) or is already gone; never weight 1
    web = ipvsadm(lab, "-Ln", "-t", "10.96.10.10:80")
    assert not re.search(r"10\.244\.1\.12:8080\s+Masq\s+1\s", web), web
    feed.apply(endpoint_slice("web", [p0, p1, p2]))
    assert set(lab.names(lab.node, "http://10.96.10.10/", 6)) == ALL
    assert re.search(r"10\.244\.1\.12:8080\s+Masq\s+1\s", ipvsadm(lab, "-Ln", "-t", "10.96.10.10:80"))


def test_graceful_removal_keeps_a_running_download(env):
    """Weight 0 while a connection lasts: the download completes, new connections go elsewhere."""
    lab, feed, _ = env
    p0, p1, _ = lab.pods
    feed.apply(service("drain", "10.96.10.16", type="NodePort", node_port=30086),
               endpoint_slice("drain", [p0]))
    size = 160 * 65536  # 160 chunks, one per 50 ms: ~8 s
    dl = subprocess.Popen(["ip", "netns", "exec", lab.client, "curl", "-s", "-o", "/dev/null", "-w",
                           "%{size_download}", "--max-time", "60", f"http://{NODE_IP}:30086/slow/{size}"],
                          stdout=subprocess.PIPE, text=True)
    # the download is under way: one active connection on pod0's real server
    assert wait_for(lambda: re.search(r"10\.244\.1\.10:8080\s+Masq\s+1\s+1\s",
                                      ipvsadm(lab, "-Ln", "-t", f"{NODE_IP}:30086")), timeout=30)
    feed.apply(endpoint_slice("drain", [p1]))
    block = ipvsadm(lab, "-Ln", "-t", f"{NODE_IP}:30086")
    assert re.search(r"10\.244\.1\.10:8080\s+Masq\s+0\s+1\s", block), block  # weight 0, 1 active connection
    assert set(lab.names(lab.client, f"http://{NODE_IP}:30086/", 4)) == {"pod1"}
    out, _ = dl.communicate(timeout=70)
    assert dl.returncode == 0 and int(out) == size


def test_removed_real_server_without_connections_is_deleted(env):
    lab, feed, _ = env
    p0, p1, p2 = lab.pods
    feed.apply(service("idle", "10.96.10.17"), endpoint_slice("idle", [p0, p1, p2]))
    feed.apply(endpoint_slice("idle", [p0, p1]))
    assert wait_for(lambda: "10.244.1.12" not in ipvsadm(lab, "-Ln", "-t", "10.96.10.17:80"), timeout=5)


def test_external_traffic_policy_local(env):
    lab, feed, _ = env
    p0, p1, p2 = lab.pods
    p2.node = "node2"
    try:
        feed.apply(service("local", "10.96.10.15", type="NodePort", node_port=30085, etp="Local"),
                   endpoint_slice("local", [p0, p1, p2]))
        assert set(lab.names(lab.client, f"http://{NODE_IP}:30085/", 6)) == {"pod0", "pod1"}
        assert lab.curl(lab.client, f"http://{NODE_IP}:30085/ip").stdout.strip() == CLIENT_IP
        assert lab.curl(lab.client, f"http://{NODE_IP}:30080/ip").stdout.strip() != CLIENT_IP
    finally:
        p2.node = "node1"


def _kernel_state(lab: ProxyLab) -> str:
    """Everything the data plane programs, without counters."""
    parts = [ipvsadm(lab, "-Sn"),
             lab.topo.run(lab.node, "ip -o addr show dev kube-ipvs0").stdout,
             lab.topo.run(lab.node, "ipset save").stdout,
             # the built-in chains' packet counters move with any traffic (iptables-legacy shows them)
             "\n".join(re.sub(r"\[\d+:\d+\]$", "[0:0]", line)
                       for line in lab.topo.run(lab.node, "iptables-save").stdout.splitlines()
                       if not line.startswith("#"))]
    return "\n".join(sorted("\n".join(parts).splitlines()))


def _diff(before: str, after: str) -> str:
    return "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm=""))


def test_kill9_keeps_traffic_and_restart_converges_without_a_flush(env):
    lab, feed, proxy = env
    # nothing may drain (and so change the table) between the two snapshots
    feed.delete("Service", "drain")
    feed.delete("EndpointSlice", "drain-abc")
    before = _kernel_state(lab)
    size = 48 * 65536
    dl = subprocess.Popen(["ip", "netns", "exec", lab.client, "curl", "-s", "-o", "/dev/null", "-w",
                           "%{size_download}", "--max-time", "30", f"http://{NODE_IP}:30080/slow/{size}"],
                          stdout=subprocess.PIPE, text=True)
    time.sleep(0.7)
    proxy.kill9()
    out, _ = dl.communicate(timeout=40)
    assert dl.returncode == 0 and int(out) == size  # the kernel carried it without the proxy
    during = _kernel_state(lab)
    assert during == before, _diff(before, during)
    proxy.start()
    feed.flush()
    after = _kernel_state(lab)
    assert after == before, "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="")) \
        + "\n---- proxy log ----\n" + proxy.log()[-3000:]
    assert set(lab.names(lab.client, f"http://{NODE_IP}:30080/", 6)) == ALL




def test_udp_flow_follows_a_moved_endpoint(env):
    lab, feed, _ = env
    p0, p1, p2 = lab.pods
    loop = subprocess.Popen(["ip", "netns", "exec", p1.ns, sys.executable, "-c", UDP_LOOP, "10", "0.3"],
                            stdout=subprocess.PIPE, text=True)
    first = loop.stdout.readline().strip()  # the flow is established (Python starts slowly in the VM)
    feed.apply(endpoint_slice("dns", [p2], protocol="UDP"))
    answers = [first] + loop.communicate(timeout=60)[0].split()
    try:
        assert answers[0] == "pod0", answers
        assert answers[-5:] == ["pod2"] * 5, answers
    finally:
        feed.apply(endpoint_slice("dns", [p0], protocol="UDP"))
