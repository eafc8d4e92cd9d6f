"""The ipvs data plane's plan: partial syncs touch only what changed and end where a full
sync from scratch would; KUBE-IPVS-OUT-FILTER as kube-proxy 1.30+ writes it; the
GET_DEST dump a drain check sends (no root, no IPVS: pure planning and messages)."""

from __future__ import annotations

import random
import socket
import struct

from kubesvc.proxy.dataplanes import ipset as ipsets
from kubesvc.proxy.dataplanes.base import changed_services
from kubesvc.proxy.dataplanes.iptables import Backend
from kubesvc.proxy.dataplanes.ipvs import IpvsDataPlane, render_rules, service_contribution
from kubesvc.proxy.dataplanes.ipvs_netlink import IPVS_CMD_GET_DEST, IPVSClient, Dest, VSKey, parse_dest
from kubesvc.proxy.model import (DesiredState, Endpoint, EndpointSet, ServiceEntry, ServicePort,
                                 ServicePortName)

NODE_IP = "192.168.50.1"


def entry(i: int, eps: tuple[str, ...], **kw) -> ServiceEntry:
    spn = ServicePortName("default", f"svc-{i}", "http", kw.get("protocol", "TCP"))
    port = ServicePort(spn, f"10.96.{i // 250}.{i % 250 + 1}", 80, **kw)
    return ServiceEntry(port, EndpointSet.categorize([Endpoint(ip, 8080, "node1", is_local=True) for ip in eps]))


def world(n: int) -> dict[ServicePortName, ServiceEntry]:
    return {e.port.name: e for e in (entry(i, (f"10.244.{i // 200}.{i % 200 + 2}", f"10.245.{i // 200}.{i % 200 + 2}"),
                                            node_port=30000 + i if i % 3 == 0 else 0,
                                            protocol="UDP" if i % 7 == 0 else "TCP")
                                      for i in range(n))}


def sync_on_paper(dp: IpvsDataPlane, services: dict, full: bool, changed: frozenset | None = None):
    """One sync without a kernel: plan against our picture and take the plan as applied."""
    desired = DesiredState(services, node_ips=(NODE_IP,), changed=changed)
    dp._node_addrs, dp._node_ip = (NODE_IP,), NODE_IP
    tv, ta, te = set(), set(), set()
    dp._update_contributions(desired, changed_services(desired, dp._applied, full), tv, ta, te)
    pl = dp.plan(tv, ta, te, full)
    dp._commit_picture(pl)
    return pl


def picture(dp: IpvsDataPlane):
    # real servers being drained (weight 0) are on their way out: what counts is what serves
    dests = {k: {d for d, w in ds.items() if w} for k, ds in dp._k_dests.items()}
    return dp._k_vs, dests, dp._k_addrs, dp._k_entries


def test_one_change_among_many_services_plans_only_that_service():
    dp = IpvsDataPlane(Backend("legacy"))
    services = world(2000)
    pl = sync_on_paper(dp, services, full=True)
    assert len(pl.vs_add) == 2000 + 667 and len(pl.bind) == 2000
    victim = ServicePortName("default", "svc-3", "http", "TCP")  # TCP, NodePort 30003
    old = services[victim]
    services = dict(services)
    services[victim] = ServiceEntry(old.port, EndpointSet.categorize(
        [old.endpoints.cluster[0], Endpoint("10.246.0.9", 8080, "node1", is_local=True)]))
    pl = sync_on_paper(dp, services, full=False, changed=frozenset({victim}))
    key = VSKey("TCP", old.port.cluster_ip, 80)
    gone = Dest(old.endpoints.cluster[1].ip, 8080)
    # the ClusterIP and the NodePort virtual server each get the new pod and drain the old one
    assert pl.dest_add == [(key, Dest("10.246.0.9", 8080)), (VSKey("TCP", NODE_IP, 30003), Dest("10.246.0.9", 8080))]
    assert sorted(pl.dest_weight) == sorted([(key, gone, 0), (VSKey("TCP", NODE_IP, 30003), gone, 0)])
    assert not (pl.vs_add or pl.vs_set or pl.vs_del or pl.bind or pl.unbind or pl.dest_del)
    assert pl.set_adds == {ipsets.LOOP_BACK: {"10.246.0.9,tcp:8080,10.246.0.9"}}
    assert pl.set_dels == {ipsets.LOOP_BACK: {f"{gone.ip},tcp:8080,{gone.ip}"}}
    assert {k for k, _ in dp._draining} == {key, VSKey("TCP", NODE_IP, 30003)}


def test_partial_syncs_end_where_a_full_sync_from_scratch_does():
    rng = random.Random(7)
    dp = IpvsDataPlane(Backend("legacy"))
    services = world(300)
    sync_on_paper(dp, services, full=True)
    for step in range(60):
        services = dict(services)
        i = rng.randrange(400)
        spn = ServicePortName("default", f"svc-{i}", "http", "UDP" if i % 7 == 0 else "TCP")
        roll = rng.random()
        if roll < 0.2 and spn in services:
            del services[spn]
        else:
            eps = tuple(f"10.244.{rng.randrange(3)}.{rng.randrange(2, 250)}" for _ in range(rng.randrange(0, 4)))
            services[spn] = entry(i, eps, node_port=30000 + i if roll > 0.7 else 0,
                                  protocol=spn.protocol, affinity_timeout=600 if roll > 0.9 else 0)
        sync_on_paper(dp, services, full=False, changed=frozenset({spn}))
    fresh = IpvsDataPlane(Backend("legacy"))
    sync_on_paper(fresh, services, full=True)
    assert picture(dp) == picture(fresh)
    # and a full sync over the partial result has nothing left to do but re-assert persistence
    pl = sync_on_paper(dp, services, full=True)
    assert not (pl.vs_add or pl.vs_del or pl.dest_add or pl.dest_del or pl.bind or pl.unbind
                or pl.set_adds or pl.set_dels)


def lb(ranges: tuple[str, ...]) -> ServiceEntry:
    spn = ServicePortName("default", "lb", "http")
    port = ServicePort(spn, "10.96.10.11", 80, node_port=30081, load_balancer_ips=("198.51.100.7",),
                       load_balancer_source_ranges=ranges)
    return ServiceEntry(port, EndpointSet.categorize([Endpoint("10.244.1.10", 8080, "node1", is_local=True)]))


def test_out_filter_drops_the_nodes_own_connections_when_source_ranges_leave_it_out():
    c = service_contribution(lb(("10.1.0.0/16",)), "rr", (NODE_IP,), NODE_IP)
    assert c.out_filter == (("198.51.100.7", "tcp", 80),)
    assert ipsets.LOAD_BALANCER_SOURCE_IP not in c.sets
    text = render_rules({ipsets.LOAD_BALANCER_FW, ipsets.LOAD_BALANCER_SOURCE_CIDR}, "10.244.0.0/16",
                        list(c.out_filter))
    assert ("-A KUBE-IPVS-OUT-FILTER -s 198.51.100.7 -m ipvs --vaddr 198.51.100.7 --vproto tcp --vport 80 -j DROP"
            in text.split("*filter")[1])
    # the node inside the ranges: its address (the LB IP, bound to kube-ipvs0) is let through instead
    c = service_contribution(lb(("192.168.50.0/24",)), "rr", (NODE_IP,), NODE_IP)
    assert c.out_filter == ()
    assert c.sets[ipsets.LOAD_BALANCER_SOURCE_IP] == {"198.51.100.7,tcp:80,198.51.100.7"}
    text = render_rules({ipsets.LOAD_BALANCER_FW, ipsets.LOAD_BALANCER_SOURCE_CIDR,
                         ipsets.LOAD_BALANCER_SOURCE_IP}, "10.244.0.0/16")
    assert ('-A KUBE-SOURCE-RANGES-FIREWALL -m comment --comment "Kubernetes service load balancer ip + port + '
            'source IP for packet filter purpose" -m set --match-set KUBE-LOAD-BALANCER-SOURCE-IP dst,dst,src '
            '-j RETURN') in text
    assert "-A KUBE-IPVS-OUT-FILTER" not in text
    # no source ranges: no filter at all
    assert service_contribution(lb(()), "rr", (NODE_IP,), NODE_IP).out_filter == ()


def test_a_node_ip_change_reconsiders_services_with_source_ranges():
    dp = IpvsDataPlane(Backend("legacy"))
    services = {lb(("192.168.50.0/24",)).port.name: lb(("192.168.50.0/24",))}
    sync_on_paper(dp, services, full=True)
    assert not dp._want_out
    desired = DesiredState(services, node_ips=("10.0.0.5",), changed=frozenset())
    # what _sync does when the node's primary address moves
    dp._node_ip = "10.0.0.5"
    tv, ta, te = set(), set(), set()
    dp._update_contributions(desired, set(services), tv, ta, te)
    assert list(dp._want_out) == [("198.51.100.7", "tcp", 80)]


def test_drain_check_asks_for_one_virtual_servers_real_servers():
    from pyroute2.netlink.generic.ipvs import ipvsmsg
    client = IPVSClient.__new__(IPVSClient)
    client.family = 42
    req = client.get_dests_request(VSKey("TCP", "10.96.0.1", 443))
    msg = ipvsmsg(struct.pack("=IHHII", 16 + len(req.body), 42, 1, 1, 0) + req.body)
    msg.decode()
    assert msg["cmd"] == IPVS_CMD_GET_DEST
    svc = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
    assert (svc.get_attr("IPVS_SVC_ATTR_ADDR"), svc.get_attr("IPVS_SVC_ATTR_PORT"),
            svc.get_attr("IPVS_SVC_ATTR_PROTOCOL")) == ("10.96.0.1", 443, socket.IPPROTO_TCP)
    assert str(req.what) == "list real servers of 10.96.0.1:443/TCP"
    # a reply as the kernel words it (built with pyroute2's own IPVS message class)
    reply = ipvsmsg()
    reply["cmd"], reply["version"] = 5, 1
    reply["attrs"] = [("IPVS_CMD_ATTR_DEST", {"attrs": [
        ("IPVS_DEST_ATTR_ADDR", "10.244.1.12"), ("IPVS_DEST_ATTR_PORT", 8080), ("IPVS_DEST_ATTR_WEIGHT", 0),
        ("IPVS_DEST_ATTR_ACTIVE_CONNS", 1), ("IPVS_DEST_ATTR_INACT_CONNS", 3), ("IPVS_DEST_ATTR_ADDR_FAMILY", 2)]})]
    reply.encode()
    assert parse_dest(bytes(reply.data[16:])) == (Dest("10.244.1.12", 8080), (0, 1, 3))


def test_weight_and_delete_messages_decode_as_the_kernel_reads_them():
    from pyroute2.netlink.generic.ipvs import ipvsmsg
    client = IPVSClient.__new__(IPVSClient)
    client.family = 42
    key, dest = VSKey("UDP", "10.96.0.10", 53), Dest("10.244.1.10", 5353)
    for req, cmd, weight in ((client.set_dest(key, dest, 0), 6, 0), (client.del_dest(key, dest), 7, None)):
        msg = ipvsmsg(struct.pack("=IHHII", 16 + len(req.body), 42, 1, 1, 0) + req.body)
        msg.decode()
        assert msg["cmd"] == cmd
        svc, d = msg.get_attr("IPVS_CMD_ATTR_SERVICE"), msg.get_attr("IPVS_CMD_ATTR_DEST")
        assert (svc.get_attr("IPVS_SVC_ATTR_PROTOCOL"), svc.get_attr("IPVS_SVC_ATTR_PORT")) == (socket.IPPROTO_UDP, 53)
        assert (d.get_attr("IPVS_DEST_ATTR_ADDR"), d.get_attr("IPVS_DEST_ATTR_PORT")) == ("10.244.1.10", 5353)
        assert d.get_attr("IPVS_DEST_ATTR_WEIGHT") == weight
        assert d.get_attr("IPVS_DEST_ATTR_FWD_METHOD") == (0 if weight is not None else None)


def test_a_contested_address_port_passes_to_the_next_claimant():
    """Two services claiming one externalIP:port: the first keeps it; when it lets go the
    other takes it over (not lost until the other one happens to change)."""
    def ext(name: str, ep: str) -> ServiceEntry:
        spn = ServicePortName("default", name, "http")
        port = ServicePort(spn, f"10.96.9.{1 if name == 'a' else 2}", 80, external_ips=("203.0.113.10",))
        return ServiceEntry(port, EndpointSet.categorize([Endpoint(ep, 8080, "node1", is_local=True)]))
    a, b = ext("a", "10.244.1.10"), ext("b", "10.244.1.11")
    key = VSKey("TCP", "203.0.113.10", 80)
    dp = IpvsDataPlane(Backend("legacy"))
    sync_on_paper(dp, {a.port.name: a, b.port.name: b}, full=True)
    assert dp._k_dests[key] == {Dest("10.244.1.10", 8080): 1}
    a2 = ext("a", "10.244.1.12")  # the owner changes: it stays the owner
    sync_on_paper(dp, {a.port.name: a2, b.port.name: b}, full=False, changed=frozenset({a.port.name}))
    assert dp._vs_owner[key] == a.port.name and Dest("10.244.1.12", 8080) in dp._k_dests[key]
    pl = sync_on_paper(dp, {b.port.name: b}, full=False, changed=frozenset({a.port.name}))
    assert key not in pl.vs_del and (key, Dest("10.244.1.11", 8080)) in pl.dest_add
    assert dp._vs_owner[key] == b.port.name and not dp._vs_contenders
