"""cleanup.removal_restore: what a starting mode removes of the other modes' iptables rules
(text in, text out; the kernel side is tests/integration/proxy_ipvs/test_mode_switch.py)."""

from __future__ import annotations

from kubesvc.proxy.dataplanes.cleanup import removal_restore

NAT = "\n".join([
    "*nat", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]",
    ":KUBE-SERVICES - [0:0]", ":KUBE-SVC-ABC - [0:0]", ":KUBE-SEP-XYZ - [0:0]", ":KUBE-NODEPORTS - [0:0]",
    ":KUBE-POSTROUTING - [0:0]", ":KUBE-PORTALS-HOST - [0:0]", ":DOCKER - [0:0]",
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    "-A OUTPUT -j KUBE-PORTALS-HOST", "-A OUTPUT -j DOCKER", "-A DOCKER -j KUBE-NODEPORTS",
    "-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-SVC-ABC",
    "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
    "-A KUBE-SVC-ABC -j KUBE-SEP-XYZ", "-A KUBE-SEP-XYZ -p tcp -j DNAT --to-destination 10.244.1.10:8080",
    "COMMIT"])
FILTER = "\n".join([
    "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
    ":KUBE-SERVICES - [0:0]", ":KUBE-EXTERNAL-SERVICES - [0:0]", ":KUBE-PROXY-FIREWALL - [0:0]",
    ":KUBE-FORWARD - [0:0]",
    '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" '
    '-j KUBE-PROXY-FIREWALL',
    '-A INPUT -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL',
    '-A INPUT -m comment --comment "an operator\'s own rule" -j KUBE-PROXY-FIREWALL',
    '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
    '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A KUBE-SERVICES -d 10.96.0.2/32 -p tcp -m comment --comment "default/empty has no endpoints" '
    '-j REJECT --reject-with icmp-port-unreachable',
    "COMMIT"])


def test_ipvs_starting_after_iptables_and_userspace():
    text = removal_restore({"nat": NAT, "filter": FILTER}, "ipvs")
    nat, flt = text.split("*filter")
    # the per-service chains, NodePorts and userspace portals go; KUBE-SERVICES (shared) is flushed
    for chain in ("KUBE-SVC-ABC", "KUBE-SEP-XYZ", "KUBE-NODEPORTS", "KUBE-PORTALS-HOST"):
        assert f"-X {chain}" in nat
    assert ":KUBE-SERVICES - [0:0]" in nat and "-X KUBE-SERVICES" not in nat
    assert "-D OUTPUT -j KUBE-PORTALS-HOST" in nat and "-D DOCKER -j KUBE-NODEPORTS" in nat
    assert "PREROUTING" not in nat and "POSTROUTING" not in nat  # jumps ipvs shares stay
    # the filter REJECT chains and their jumps go; the iptables mode's firewall jump too
    assert "-X KUBE-SERVICES" in flt and "-X KUBE-EXTERNAL-SERVICES" in flt
    assert '-D OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals"' in flt
    assert "kubernetes load balancer firewall" in flt and "-X KUBE-PROXY-FIREWALL" not in flt
    assert "kube-proxy firewall rules" not in flt and "own rule" not in flt and "KUBE-FORWARD" not in flt


def test_nftables_removes_every_iptables_based_mode_and_nothing_else():
    text = removal_restore({"nat": NAT, "filter": FILTER}, "nftables")
    for chain in ("KUBE-SERVICES", "KUBE-SVC-ABC", "KUBE-POSTROUTING", "KUBE-PORTALS-HOST", "KUBE-FORWARD",
                  "KUBE-PROXY-FIREWALL", "KUBE-EXTERNAL-SERVICES"):
        assert f"-X {chain}" in text
    assert "-X DOCKER" not in text and "-D OUTPUT -j DOCKER" not in text
    assert "-D DOCKER -j KUBE-NODEPORTS" in text
    assert removal_restore({"nat": "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT", "filter": ""}, "nftables") == ""


def test_a_mode_keeps_its_own_rules():
    assert removal_restore({"nat": "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODE-PORT - [0:0]\n"
                                   "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT\nCOMMIT"},
                           "ipvs") == ""
