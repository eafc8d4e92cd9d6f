"""The ipvs data plane's pure parts: what each service asks of the kernel, the plan of
changes against a picture of the kernel, the netlink messages, the proc and ipset
parsers, and the mode choice (no root, no IPVS needed)."""

from __future__ import annotations

import socket

import pytest

from kubesvc.proxy.dataplanes.base import changed_services
from kubesvc.proxy.dataplanes import ipset as ipsets
from kubesvc.proxy.dataplanes.iptables import Backend
from kubesvc.proxy.dataplanes.ipvs import IpvsDataPlane, render_rules, service_contribution
from kubesvc.proxy.dataplanes.ipvs_netlink import (FLAG_PERSISTENT, Dest, IPVSClient, NetlinkBatcher, VSKey,
                                                   VSSpec, parse_proc_ip_vs)
from kubesvc.proxy.model import (DesiredState, Endpoint, EndpointSet, ServiceEntry, ServicePort,
                                 ServicePortName)
from kubesvc.proxy.modes import ModeError, choose_mode

NODE = ("192.168.50.1",)


def entry(name="web", cip="10.96.10.10", eps=("10.244.1.10", "10.244.1.11"), **kw) -> ServiceEntry:
    spn = ServicePortName("default", name, "http")
    port = ServicePort(spn, cip, 80, **kw)
    return ServiceEntry(port, EndpointSet.categorize([Endpoint(ip, 8080, "node1", is_local=True) for ip in eps]))


def test_clusterip_service_is_one_virtual_server_bound_to_kube_ipvs0():
    c = service_contribution(entry(), "rr", NODE)
    key = VSKey("TCP", "10.96.10.10", 80)
    assert c.vs == {key: (VSSpec("rr", 0, 0), frozenset({Dest("10.244.1.10", 8080), Dest("10.244.1.11", 8080)}))}
    assert c.addrs == {"10.96.10.10"}
    assert c.sets[ipsets.CLUSTER_IP] == {"10.96.10.10,tcp:80"}
    assert c.sets[ipsets.LOOP_BACK] == {"10.244.1.10,tcp:8080,10.244.1.10", "10.244.1.11,tcp:8080,10.244.1.11"}
    assert c.sets[ipsets.IPVS_IPS] == {"10.96.10.10"}


def test_nodeport_external_and_lb_addresses():
    c = service_contribution(entry(node_port=30080, external_ips=("203.0.113.10", "192.168.50.1"),
                                   load_balancer_ips=("198.51.100.7",), affinity_timeout=600,
                                   external_policy_local=True), "rr", NODE)
    assert set(c.vs) == {VSKey("TCP", "10.96.10.10", 80), VSKey("TCP", "203.0.113.10", 80),
                         VSKey("TCP", "192.168.50.1", 80), VSKey("TCP", "198.51.100.7", 80),
                         VSKey("TCP", "192.168.50.1", 30080)}
    # a node's own address is never moved onto kube-ipvs0
    assert c.addrs == {"10.96.10.10", "203.0.113.10", "198.51.100.7"}
    assert all(spec == VSSpec("rr", FLAG_PERSISTENT, 600) for spec, _ in c.vs.values())
    assert c.sets[ipsets.NODE_PORT_TCP] == {"30080"} and c.sets[ipsets.NODE_PORT_LOCAL_TCP] == {"30080"}
    assert c.sets[ipsets.EXTERNAL_IP_LOCAL] == {"203.0.113.10,tcp:80", "192.168.50.1,tcp:80"}
    assert c.sets[ipsets.LOAD_BALANCER_LOCAL] == {"198.51.100.7,tcp:80"}


def test_udp_nodeport_and_scheduler():
    c = service_contribution(entry(protocol="UDP", node_port=30053), "mh", NODE)
    assert VSKey("UDP", "192.168.50.1", 30053) in c.vs
    assert c.sets[ipsets.NODE_PORT_UDP] == {"30053"}
    assert next(iter(c.vs.values()))[0].scheduler == "mh"


def test_rules_follow_the_sets_in_use():
    text = render_rules({ipsets.CLUSTER_IP, ipsets.NODE_PORT_TCP}, "10.244.0.0/16")
    assert ('-A KUBE-SERVICES ! -s 10.244.0.0/16 -m comment --comment "Kubernetes service cluster ip + port for '
            'masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ') in text
    assert "-A KUBE-NODE-PORT -p tcp" in text and "KUBE-NODE-PORT-UDP" not in text.split("*filter")[0]
    assert "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000" in text
    assert text.count("COMMIT") == 2 and text.startswith("*nat\n")
    assert "src,dst -j KUBE-MARK-MASQ" in render_rules({ipsets.CLUSTER_IP}, None)


def dp_with_kernel(kernel_vs: dict, kernel_dests: dict) -> IpvsDataPlane:
    dp = IpvsDataPlane(Backend("nft"))
    dp._k_vs, dp._k_dests = kernel_vs, kernel_dests
    return dp


def plan_for(dp: IpvsDataPlane, *entries: ServiceEntry, full: bool = True):
    desired = DesiredState({e.port.name: e for e in entries}, node_ips=NODE)
    tv, ta, ts = set(), set(), set()
    dp._node_addrs = NODE
    dp._update_contributions(desired, changed_services(desired, dp._applied, True), tv, ta, ts)
    if full:
        tv |= set(dp._k_vs)
    return dp.plan(tv, ta, ts, full)


def test_plan_from_empty_kernel_adds_everything():
    pl = plan_for(dp_with_kernel({}, {}), entry())
    key = VSKey("TCP", "10.96.10.10", 80)
    assert pl.vs_add == {key: VSSpec()} and len(pl.dest_add) == 2 and pl.bind == {"10.96.10.10"}
    assert pl.set_adds[ipsets.CLUSTER_IP] == {"10.96.10.10,tcp:80"}


def test_plan_against_a_matching_kernel_changes_nothing():
    key = VSKey("TCP", "10.96.10.10", 80)
    dp = dp_with_kernel({key: VSSpec()}, {key: {Dest("10.244.1.10", 8080): 1, Dest("10.244.1.11", 8080): 1}})
    pl = plan_for(dp, entry())
    assert not (pl.vs_add or pl.vs_set or pl.vs_del or pl.dest_add or pl.dest_weight or pl.dest_del)


def test_removed_tcp_real_server_drains_and_udp_one_goes_at_once():
    tcp, udp = VSKey("TCP", "10.96.10.10", 80), VSKey("UDP", "10.96.10.14", 80)
    gone = Dest("10.244.1.12", 8080)
    dp = dp_with_kernel({tcp: VSSpec(), udp: VSSpec()},
                        {tcp: {Dest("10.244.1.10", 8080): 1, Dest("10.244.1.11", 8080): 1, gone: 1},
                         udp: {Dest("10.244.1.10", 8080): 1, Dest("10.244.1.11", 8080): 1, gone: 1}})
    pl = plan_for(dp, entry(), entry("dns", "10.96.10.14", protocol="UDP"))
    assert pl.dest_weight == [(tcp, gone, 0)] and (tcp, gone) in dp._draining
    assert pl.dest_del == [(udp, gone)]
    # the endpoint comes back: weight 1 again, no longer draining
    dp._k_dests[tcp][gone] = 0
    dp._applied = {}
    pl = plan_for(dp, entry(eps=("10.244.1.10", "10.244.1.11", "10.244.1.12")),
                  entry("dns", "10.96.10.14", protocol="UDP"))
    assert (tcp, gone, 1) in pl.dest_weight and (tcp, gone) not in dp._draining


def test_stale_virtual_servers_are_deleted_unless_excluded():
    stale, other = VSKey("TCP", "10.96.99.99", 80), VSKey("TCP", "172.17.0.5", 80)
    dp = dp_with_kernel({stale: VSSpec(), other: VSSpec()}, {stale: {}, other: {}})
    dp.exclude = [__import__("ipaddress").ip_network("172.16.0.0/12")]
    pl = plan_for(dp, entry())
    assert pl.vs_del == [stale]


def hdr(body: bytes) -> bytes:
    import struct
    return struct.pack("=IHHII", 16 + len(body), 42, 1, 1, 0) + body


def test_netlink_messages_decode_as_the_kernel_reads_them():
    from pyroute2.netlink.generic.ipvs import ipvsmsg
    client = IPVSClient.__new__(IPVSClient)
    client.family = 42
    key = VSKey("TCP", "10.96.0.1", 443)
    req = client.add_service(key, VSSpec("rr", FLAG_PERSISTENT, 10800))
    msg = ipvsmsg(hdr(req.body))
    msg.decode()
    svc = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
    assert svc.get_attr("IPVS_SVC_ATTR_ADDR") == "10.96.0.1"
    assert svc.get_attr("IPVS_SVC_ATTR_PORT") == 443
    assert svc.get_attr("IPVS_SVC_ATTR_PROTOCOL") == socket.IPPROTO_TCP
    assert svc.get_attr("IPVS_SVC_ATTR_SCHED_NAME") == "rr"
    assert svc.get_attr("IPVS_SVC_ATTR_TIMEOUT") == 10800
    req = client.add_dest(key, Dest("10.244.1.10", 8080), 1)
    msg = ipvsmsg(hdr(req.body))
    msg.decode()
    dest = msg.get_attr("IPVS_CMD_ATTR_DEST")
    assert dest.get_attr("IPVS_DEST_ATTR_ADDR") == "10.244.1.10"
    assert dest.get_attr("IPVS_DEST_ATTR_PORT") == 8080
    assert dest.get_attr("IPVS_DEST_ATTR_FWD_METHOD") == 0  # masquerade, as kube-proxy
    assert dest.get_attr("IPVS_DEST_ATTR_WEIGHT") == 1


PROC = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  0A600A0A:0050 rr 
  -> 0AF4010C:1F90      Masq    0      1          0         
  -> 0AF4010B:1F90      Masq    1      0          3         
TCP  0A600A0C:0050 rr persistent 150000 FFFFFFFF
UDP  0A600A0E:0035 rr 
"""


def test_proc_ip_vs_parsing():
    vs = parse_proc_ip_vs(PROC, hz=250)
    web = vs[VSKey("TCP", "10.96.10.10", 80)]
    assert web.spec == VSSpec("rr", 0, 0)
    assert web.dests == {Dest("10.244.1.12", 8080): (0, 1, 0), Dest("10.244.1.11", 8080): (1, 0, 3)}
    assert vs[VSKey("TCP", "10.96.10.12", 80)].spec == VSSpec("rr", FLAG_PERSISTENT, 600)
    assert vs[VSKey("UDP", "10.96.10.14", 53)].dests == {}


def test_ipset_save_and_restore_round_trip():
    saved = parse_save("create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\n"
                       "add KUBE-CLUSTER-IP 10.96.0.1,tcp:443\ncreate OTHER hash:ip\nadd OTHER 1.2.3.4\n")
    assert saved == {"KUBE-CLUSTER-IP": {"10.96.0.1,tcp:443"}}
    script = ipsets.render_restore({"KUBE-CLUSTER-IP": {"10.96.0.10,udp:53"}},
                                   {"KUBE-CLUSTER-IP": {"10.96.0.1,tcp:443"}}, create=True)
    lines = script.splitlines()
    assert "create KUBE-NODE-PORT-TCP bitmap:port range 0-65535 -exist" in lines
    assert lines.index("del KUBE-CLUSTER-IP 10.96.0.1,tcp:443 -exist") < \
        lines.index("add KUBE-CLUSTER-IP 10.96.0.10,udp:53 -exist")


parse_save = ipsets.parse_save


def test_mode_choice_follows_the_seed():
    yes = lambda sched: (True, "the kernel answers")  # noqa: E731
    no = lambda sched: (False, "IPVS is not available: modprobe ip_vs failed: Module ip_vs not found")  # noqa: E731
    assert choose_mode("auto", is_root=True, probe=yes).mode == "ipvs"
    c = choose_mode("auto", is_root=True, probe=no)
    assert c.mode == "iptables" and "ip_vs" in c.reason and "using iptables" in c.reason
    assert choose_mode("auto", is_root=False, probe=yes).mode == "userspace"
    c = choose_mode("ipvs", is_root=True, probe=no)
    assert c.mode == "iptables" and c.fell_back and "falling back to iptables" in c.reason
    with pytest.raises(ModeError, match="ip_vs"):
        choose_mode("ipvs", is_root=True, no_fallback=True, probe=no)
    assert choose_mode("iptables", is_root=True, probe=no).mode == "iptables"


def test_batcher_reports_kernel_refusals():
    """Batched requests on a real (unprivileged-safe) netlink socket: errors come back by sequence."""
    nl = NetlinkBatcher(socket.NETLINK_ROUTE)
    try:
        from kubesvc.proxy.dataplanes.ipvs_netlink import RTM_DELADDR, Request, _attr
        import struct
        # deleting an address from a link index that does not exist: ENODEV for each
        body = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, 999999) + _attr(2, socket.inet_aton("10.0.0.1"))
        fails = nl.run([Request(RTM_DELADDR, 0, body, "del a"), Request(RTM_DELADDR, 0, body, "del b")])
        assert [r.what for r, _ in fails] == ["del a", "del b"]
    finally:
        nl.close()
