"""Service traffic through the nftables data plane, in throw-away namespaces (root).

The proxy engineer's lab (tests/integration/proxy/lab.py): a node namespace with
three pods behind a bridge and a client namespace beside it; the proxy (the real
tracker, sync loop and nftables data plane, fed from a file by tests/integration/proxy/driver.py)
runs in the node namespace. Asserted is what users see: curl answers, refusals,
the source address a pod sees, timings, and `nft list` output.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from tests.integration.proxy.lab import CLIENT_IP, NODE_IP, ProxyLab
from tests.integration.proxy.harness import ROOT, fed_lab
from tests.integration.proxy.objects import endpoint_slice, service
from tests.integration.proxy.scenarios import ALL, StandardWorld, endpoint_removal_within_2s

pytestmark = pytest.mark.root
@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with fed_lab("nftables", tmp_path_factory.mktemp("proxy_nft") / "state.json") as env:
        yield env


def nft(lab: ProxyLab, *args: str) -> str:
    return lab.topo.run(lab.node, "nft " + " ".join(args)).stdout


def test_table_shows_kube_proxys_layout(env):
    lab, _, _ = env
    table = nft(lab, "list table ip kube-proxy")
    for chain in ("services", "masquerading", "mark-for-masquerade", "endpoints-check", "firewall-check",
                  "reject-chain", "nat-prerouting", "nat-output", "nat-postrouting", "filter-input"):
        assert f"\tchain {chain} {{" in table
    for m in ("service-ips", "service-nodeports", "no-endpoint-services", "no-endpoint-nodeports", "firewall-ips"):
        assert f"\tmap {m} {{" in table
    assert "type ipv4_addr . inet_proto . inet_service : verdict" in table
    assert re.search(r"10\.96\.10\.10 \. tcp \. 80 : goto service-\w{8}-default/web/tcp/http", table)
    assert re.search(r"tcp \. 30080 : goto external-\w{8}-default/web/tcp/http", table)
    assert re.search(r"\tchain service-\w{8}-default/web/tcp/http \{", table)
    # one endpoint in three, then one in two, then the last
    assert "meta l4proto tcp numgen random mod 3 0 dnat to 10.244.1.10:8080" in table
    assert "meta l4proto tcp numgen random mod 2 0 dnat to 10.244.1.11:8080" in table
    assert "ip saddr . ip daddr @hairpin-endpoints masquerade fully-random" in table
    assert re.search(r'tcp \. 30083 comment "default/empty:http" : goto reject-chain', table)
    assert re.search(r"update @affinity-\w{8}-default/sticky/tcp/http__10\.244\.1\.1\d/8080 \{ ip saddr \} dnat", table)
    assert "timeout 10m" in table
    assert "meta mark set meta mark | 0x00004000" in table


class TestStandardWorld(StandardWorld):
    """The scenarios all data planes share, through the nftables data plane."""

    def test_client_ip_affinity_pins(self, env):
        super().test_client_ip_affinity_pins(env)
        lab, _, _ = env
        assert CLIENT_IP in nft(lab, "list sets ip")  # the client's address is in an affinity set


def test_endpoint_removal_takes_effect_within_2s(env):
    lab, feed, _ = env

    def web_chain_lost_pod2():
        web = re.search(r"chain service-\w{8}-default/web/tcp/http \{(.*?)\}", nft(lab, "list table ip kube-proxy"),
                        re.S).group(1)
        assert "dnat to 10.244.1.11:8080" in web and "10.244.1.12" not in web

    endpoint_removal_within_2s(lab, feed, also=web_chain_lost_pod2)


def test_external_traffic_policy_local(env):
    lab, feed, _ = env
    p0, p1, p2 = lab.pods
    p2.node = "node2"  # pod2's endpoint now says it runs on another node
    try:
        feed.apply(service("local", "10.96.10.15", type="NodePort", node_port=30085, etp="Local"),
                   endpoint_slice("local", [p0, p1, p2]))
        assert set(lab.names(lab.client, f"http://{NODE_IP}:30085/", 30)) == {"pod0", "pod1"}
        # the pod sees the client's own address (no masquerade under policy Local) ...
        assert lab.curl(lab.client, f"http://{NODE_IP}:30085/ip").stdout.strip() == CLIENT_IP
        # ... and under policy Cluster it sees the node's
        assert lab.curl(lab.client, f"http://{NODE_IP}:30080/ip").stdout.strip() != CLIENT_IP
        # no local endpoint at all: external traffic is dropped (not refused), as kube-proxy does
        feed.apply(endpoint_slice("local", [p2]))
        assert lab.curl(lab.client, f"http://{NODE_IP}:30085/", timeout=1).returncode == 28  # timed out
    finally:
        p2.node = "node1"
        feed.delete("Service", "local")
        feed.delete("EndpointSlice", "local-abc")


def canonical_table(text: str, set_elements: bool = True) -> list[str]:
    """`nft list table` as sorted (block | line) items: the element order of a hash map is not ours."""
    out, block, in_elements = [], "", False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith(("chain ", "map ", "set ")):
            block = s
        if s.startswith("elements = {"):
            in_elements, s = True, s.removeprefix("elements = {")
        if in_elements:
            in_elements = not s.endswith("}")
            if set_elements or not block.startswith("set "):
                out += [f"{block} | {i.strip()}" for i in s.rstrip("}").split(",") if i.strip()]
            continue
        if s not in ("", "}"):  # blank lines and braces follow creation order, not content
            out.append(f"{block} | {s}")
    return sorted(out)


def without_expiry(text: str) -> str:
    return re.sub(r" expires \S+", "", text)


def test_partial_syncs_match_a_fresh_full_sync_in_the_kernel(env, tmp_path):
    """What the changes above left equals what a new proxy writes into an empty table."""
    lab, feed, proxy = env
    feed.flush()
    after_partials = nft(lab, "list table ip kube-proxy")
    proxy.kill9()
    nft(lab, "delete table ip kube-proxy")
    proxy.start()
    feed.flush()
    fresh = nft(lab, "list table ip kube-proxy")
    # (affinity entries went with the deleted table)
    assert canonical_table(after_partials, set_elements=False) == canonical_table(fresh, set_elements=False)


def test_kill9_keeps_traffic_and_restart_keeps_the_ruleset(env):
    lab, feed, proxy = env
    feed.flush()
    before = nft(lab, "-s list ruleset")
    size = 64 * 65536  # 64 chunks, one per 50 ms: ~3 s
    dl = subprocess.Popen(["ip", "netns", "exec", lab.client, "curl", "-s", "-o", "/dev/null", "-w",
                           "%{size_download}", "--max-time", "20", f"http://{NODE_IP}:30080/slow/{size}"],
                          stdout=subprocess.PIPE, text=True)
    time.sleep(0.7)
    proxy.kill9()
    out, _ = dl.communicate(timeout=20)
    assert dl.returncode == 0 and int(out) == size  # the kernel carried it without the proxy
    proxy.start()
    feed.flush()
    assert without_expiry(nft(lab, "-s list ruleset")) == without_expiry(before), proxy.log()[-3000:]
    assert set(lab.names(lab.client, f"http://{NODE_IP}:30080/", 40)) == ALL


RECOVERY = r'''
import asyncio, subprocess, sys
from kubesvc.proxy.dataplanes.nftables import NftablesDataPlane
from kubesvc.proxy.model import *

def st(ips):
    spn = ServicePortName("default", "web", "http")
    eps = EndpointSet.categorize([Endpoint(ip, 8080, "node1", True) for ip in ips])
    return DesiredState({spn: ServiceEntry(ServicePort(spn, "10.96.0.10", 80), eps)}, changed=frozenset({spn}))

async def main():
    dp = NftablesDataPlane()
    assert dp._lib is not None, "libnftables not loaded"
    print("first", (await dp.sync(st(["10.244.1.10"]))).full)
    print("partial", (await dp.sync(st(["10.244.1.11"]))).full)
    # someone deletes our service chain behind our back: the next partial fails ...
    chain = next(c for c in dp._known_chains if c.startswith("service-"))
    subprocess.run(["nft", "delete element ip kube-proxy service-ips { 10.96.0.10 . tcp . 80 }"], check=True)
    subprocess.run(["nft", "delete chain ip kube-proxy " + chain], check=True)
    try:
        await dp.sync(st(["10.244.1.12"]))
        print("no error")
    except RuntimeError as err:
        print("failed", "libnftables" in str(err))
    # ... and the one after it rewrites everything
    print("repair", (await dp.sync(st(["10.244.1.12"]))).full)
    print(subprocess.run(["nft", "list chain ip kube-proxy " + chain], capture_output=True, text=True).stdout)

asyncio.run(main())
'''


def test_a_failed_partial_sync_is_repaired_by_a_full_one(tmp_path):
    from tests.lib.netns import Topology
    with Topology() as topo:
        ns = topo.ns("nftfail")
        script = tmp_path / "recovery.py"
        script.write_text(RECOVERY)
        r = topo.run(ns, f"{sys.executable} {script}", check=False, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[:4] == ["first True", "partial False", "failed True", "repair True"], r.stdout
        assert "dnat to 10.244.1.12:8080" in r.stdout


def test_load_balancer_source_ranges(env):
    lab, feed, _ = env
    p0, p1, _ = lab.pods
    fw = service("fw", "10.96.10.17", type="LoadBalancer", node_port=30087, lb_ip="198.51.100.9")
    fw["spec"]["loadBalancerSourceRanges"] = ["192.168.50.0/24"]  # the client's network
    try:
        feed.apply(fw, endpoint_slice("fw", [p0, p1]))
        assert set(lab.names(lab.client, "http://198.51.100.9/", 20)) == {"pod0", "pod1"}
        assert re.search(r"198\.51\.100\.9 \. tcp \. 80 comment \"default/fw:http\" : goto firewall-\w{8}-default/fw/",
                         nft(lab, "list map ip kube-proxy firewall-ips"))
        fw["spec"]["loadBalancerSourceRanges"] = ["10.1.0.0/16"]
        feed.apply(fw)
        # dropped before DNAT by the service's firewall chain (filter-prerouting → firewall-check)
        assert lab.curl(lab.client, "http://198.51.100.9/", timeout=1).returncode == 28
        assert lab.curl(lab.client, f"http://{NODE_IP}:30087/").stdout.strip() in ("pod0", "pod1")  # NodePorts are not subject to it
    finally:
        feed.delete("Service", "fw")
        feed.delete("EndpointSlice", "fw-abc")


LEFTOVERS = """
add table ip kube-proxy { comment "rules for kube-proxy" ; }
add chain ip kube-proxy filter-output-post-dnat { type filter hook output priority -90 ; }
add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
add chain ip kube-proxy cluster-ips-check
add rule ip kube-proxy cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports"
add rule ip kube-proxy filter-output-post-dnat ct state new jump cluster-ips-check
add map ip kube-proxy old-map { type ipv4_addr : verdict ; }
add chain ip kube-proxy endpoint-AAAAAAAA-default/web/tcp/http__10.244.1.10/8080
add rule ip kube-proxy endpoint-AAAAAAAA-default/web/tcp/http__10.244.1.10/8080 meta l4proto tcp dnat to 10.244.1.10:8080
add chain ip kube-proxy service-BBBBBBBB-default/web/tcp/http
add rule ip kube-proxy service-BBBBBBBB-default/web/tcp/http numgen random mod 1 vmap { 0 : goto endpoint-AAAAAAAA-default/web/tcp/http__10.244.1.10/8080 }
add element ip kube-proxy old-map { 10.96.0.99 : goto service-BBBBBBBB-default/web/tcp/http }
"""

CONVERGE = r'''
import asyncio, sys
from kubesvc.proxy.dataplanes.nftables import NftablesDataPlane
from kubesvc.proxy.model import *
spn = ServicePortName("default", "web", "http")
eps = EndpointSet.categorize([Endpoint("10.244.1.11", 8080, "node1", True)])
asyncio.run(NftablesDataPlane().sync(DesiredState({spn: ServiceEntry(ServicePort(spn, "10.96.0.10", 80), eps)})))
'''


def test_first_sync_removes_what_an_older_layout_or_kube_proxy_left(tmp_path):
    """Converging means the same table whatever was there: kube-proxy's own leftovers go."""
    from tests.lib.netns import Topology
    script = tmp_path / "converge.py"
    script.write_text(CONVERGE)
    tables = []
    with Topology() as topo:
        for leftovers in (LEFTOVERS, ""):
            ns = topo.ns(f"conv{len(tables)}")
            if leftovers:
                topo.run(ns, "nft -f -", input=leftovers)
            r = topo.run(ns, f"{sys.executable} {script}", check=False, cwd=ROOT)
            assert r.returncode == 0, r.stderr
            tables.append(topo.run(ns, "nft list table ip kube-proxy").stdout)
    assert "cluster-ips" not in tables[0] and "AAAAAAAA" not in tables[0] and "old-map" not in tables[0]
    assert canonical_table(tables[0]) == canonical_table(tables[1])


SWITCH = r'''
import asyncio
from kubesvc.proxy.dataplanes.iptables import IptablesDataPlane, detect_backend
from kubesvc.proxy.dataplanes.nftables import NftablesDataPlane
from kubesvc.proxy.model import *
spn = ServicePortName("default", "web", "http")
state = lambda eps: DesiredState({spn: ServiceEntry(ServicePort(spn, "10.96.0.10", 80, node_port=30080),
                                  EndpointSet.categorize(eps))})
async def main():
    await IptablesDataPlane(detect_backend("auto")[0]).sync(state([]))  # leaves REJECTs for it
    await NftablesDataPlane().sync(state([Endpoint("10.244.1.11", 8080, "node1", True)]))
asyncio.run(main())
'''


def test_switching_from_the_iptables_mode_removes_its_rules(tmp_path):
    from tests.lib.netns import Topology
    script = tmp_path / "switch.py"
    script.write_text(SWITCH)
    with Topology() as topo:
        ns = topo.ns("switch")
        r = topo.run(ns, f"{sys.executable} {script}", check=False, cwd=ROOT)
        assert r.returncode == 0, r.stderr
        left = [line for line in topo.run(ns, "iptables-save").stdout.splitlines() if "KUBE-" in line]
        assert left == [] or all("KUBE-IPTABLES-HINT" in line or "KUBE-KUBELET-CANARY" in line for line in left), left
        assert "10.96.0.10 . tcp . 80 : goto service-" in topo.run(ns, "nft list table ip kube-proxy").stdout
