"""Small pure parts: durations, mode choice, conntrack cleanup, the relay's balancer."""

from __future__ import annotations

import pytest

from kubesvc.proxy.cmd import choose_mode, parse_duration
from kubesvc.proxy.conntrack import stale_flows
from kubesvc.proxy.dataplanes.relay import Balancer
from kubesvc.proxy.model import Endpoint, EndpointSet, ServiceEntry, ServicePort, ServicePortName


def test_durations():
    assert parse_duration("1s") == 1 and parse_duration("500ms") == 0.5 and parse_duration("1m30s") == 90
    assert parse_duration("2") == 2
    with pytest.raises(Exception):
        parse_duration("fast")


def test_mode_fallbacks():
    assert choose_mode("auto", False)[0] == "userspace"
    assert choose_mode("auto", True)[0] in ("iptables", "ipvs")  # ipvs only where the kernel has IPVS
    mode, why = choose_mode("ipvs", True)
    assert mode == "ipvs" or (mode == "iptables" and "falling back to iptables" in why)


def _dns(eps):
    spn = ServicePortName("kube-system", "kube-dns", "dns", "UDP")
    return {spn: ServiceEntry(ServicePort(spn, "10.96.0.10", 53, "UDP"),
                              EndpointSet.categorize([Endpoint(ip, 53) for ip in eps]))}


def test_conntrack_stale_udp():
    cmds = stale_flows(_dns(["10.244.0.2", "10.244.0.3"]), _dns(["10.244.0.3"]))
    assert cmds == [["-D", "-p", "udp", "--orig-dst", "10.96.0.10", "--dst-nat", "10.244.0.2"]]
    # first endpoint: forget the flows that recorded "no endpoints"
    assert stale_flows(_dns([]), _dns(["10.244.0.9"])) == [["-D", "-p", "udp", "--orig-dst", "10.96.0.10"]]
    assert stale_flows(_dns(["10.244.0.2"]), _dns(["10.244.0.2"])) == []


def test_balancer_round_robin_and_affinity():
    b = Balancer([("a", 1), ("b", 1), ("c", 1)])
    assert [b.pick("x")[0] for _ in range(6)] == list("abcabc")
    b.update([("a", 1), ("b", 1), ("c", 1)], 60)
    first = b.pick("1.2.3.4")
    assert all(b.pick("1.2.3.4") == first for _ in range(10))
    b.update([e for e in b.endpoints if e != first], 60)
    assert b.pick("1.2.3.4") != first
    assert Balancer([]).pick("x") is None


def test_leftovers_of_the_other_mode():
    from kubesvc.proxy.dataplanes.cleanup import leftover_restore
    nat = "\n".join([
        "*nat", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":KUBE-PORTALS-CONTAINER - [0:0]",
        ":KUBE-PORTALS-HOST - [0:0]", ":KUBE-SERVICES - [0:0]", ":KUBE-SVC-ABC - [0:0]",
        '-A PREROUTING -m comment --comment "handle ClusterIPs" -j KUBE-PORTALS-CONTAINER',
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        "-A OUTPUT -j KUBE-PORTALS-HOST",
        "-A KUBE-PORTALS-HOST -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j REDIRECT --to-ports 40000", "COMMIT"])
    text = leftover_restore({"nat": nat}, "userspace")
    assert '-D PREROUTING -m comment --comment "handle ClusterIPs" -j KUBE-PORTALS-CONTAINER' in text
    assert "-D OUTPUT -j KUBE-PORTALS-HOST" in text and "-X KUBE-PORTALS-HOST" in text
    assert "KUBE-SERVICES" not in text and "KUBE-SVC-ABC" not in text
    text = leftover_restore({"nat": nat, "filter": ""}, "iptables")
    assert "-X KUBE-SVC-ABC" in text and "-X KUBE-SERVICES" in text and "PORTALS" not in text
