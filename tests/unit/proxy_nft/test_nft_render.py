"""The nftables data plane's rendering (no root): kube-proxy's names and layout, and
partial syncs leaving exactly what one full sync of the same state leaves.

The transactions are replayed into a small model of an nftables table that is as
strict as the kernel about what these tests rely on (a rule needs its chain, a
jump needs its target, an element key is added once and deleted only when
present, a referenced chain or set cannot be deleted). The real kernel is the
oracle of tests/integration/proxy_nft.
"""

from __future__ import annotations

import random
import re

import pytest

from kubesvc.proxy.dataplanes.nft_rules import (VMAP_MIN_ENDPOINTS, endpoint_base, service_base,
                                                service_nft)
from kubesvc.proxy.dataplanes.nftables import NftablesDataPlane
from kubesvc.proxy.model import (DesiredState, Endpoint, EndpointSet, ServiceEntry, ServicePort,
                                 ServicePortName)

SPN = ServicePortName("ns1", "svc1", "p80", "TCP")


def entry(spn=SPN, ip="10.96.0.10", eps=("10.244.1.10", "10.244.1.11"), local=(), name=None, **kw) -> ServiceEntry:
    spn = name or spn
    endpoints = [Endpoint(e, 8080, "node1" if e in local or not local else "node2", e in local or not local)
                 for e in eps]
    return ServiceEntry(ServicePort(spn, ip, 80, **kw), EndpointSet.categorize(endpoints))


def test_names_are_kube_proxys():
    # the examples in kube-proxy's own comments (pkg/proxy/nftables/proxier.go)
    assert service_base(SPN, "tcp") == "ULMVA6XW-ns1/svc1/tcp/p80"
    assert endpoint_base(SPN, "tcp", Endpoint("10.180.0.1", 80)) == "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"


def test_clusterip_service_layout():
    s = service_nft(entry(), "10.244.0.0/16")
    svc = "service-ULMVA6XW-ns1/svc1/tcp/p80"
    assert s.elements == [("service-ips", "10.96.0.10 . tcp . 80", f"goto {svc}", ""),
                          ("hairpin-endpoints", "10.244.1.10 . 10.244.1.10", "", ""),
                          ("hairpin-endpoints", "10.244.1.11 . 10.244.1.11", "", "")]
    assert s.chains == {svc: [
        "ip daddr 10.96.0.10 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
        "meta l4proto tcp numgen random mod 2 == 0 dnat to 10.244.1.10:8080",
        "meta l4proto tcp dnat to 10.244.1.11:8080",
    ]}
    assert not s.affinity_sets


def test_spreading_probabilities_and_a_map_for_many_endpoints():
    three = service_nft(entry(eps=("10.244.1.1", "10.244.1.2", "10.244.1.3"), protocol="UDP",
                              name=ServicePortName("ns1", "svc1", "p80", "UDP")), None)
    (rules,) = three.chains.values()
    assert [r.partition("dnat")[0].strip() for r in rules] == [
        "meta l4proto udp numgen random mod 3 == 0", "meta l4proto udp numgen random mod 2 == 0", "meta l4proto udp"]
    many = service_nft(entry(eps=tuple(f"10.244.1.{i}" for i in range(1, VMAP_MIN_ENDPOINTS + 1))), None)
    (rule,) = many.chains["service-ULMVA6XW-ns1/svc1/tcp/p80"]
    assert rule.startswith(f"meta l4proto tcp dnat ip addr . port to numgen random mod {VMAP_MIN_ENDPOINTS} "
                           "map { 0 : 10.244.1.1 . 8080, 1 : ")


def test_no_endpoints_rejects_and_external_local_without_local_endpoints_drops():
    s = service_nft(entry(eps=(), node_port=30080, external_ips=("203.0.113.1",)), None)
    assert not s.chains
    assert sorted(s.elements) == [
        ("no-endpoint-nodeports", "tcp . 30080", "goto reject-chain", "ns1/svc1:p80"),
        ("no-endpoint-services", "10.96.0.10 . tcp . 80", "goto reject-chain", "ns1/svc1:p80"),
        ("no-endpoint-services", "203.0.113.1 . tcp . 80", "goto reject-chain", "ns1/svc1:p80"),
    ]
    s = service_nft(entry(local=("10.244.9.9",), node_port=30080, external_policy_local=True), None)
    assert ("no-endpoint-nodeports", "tcp . 30080", "drop", "ns1/svc1:p80") in s.elements
    assert ("service-nodeports", "tcp . 30080", "goto external-ULMVA6XW-ns1/svc1/tcp/p80", "") in s.elements


def test_external_policy_local_short_circuits_and_keeps_local_endpoints():
    s = service_nft(entry(local=("10.244.1.10",), node_port=30080, external_policy_local=True), "10.244.0.0/16")
    ext = s.chains["external-ULMVA6XW-ns1/svc1/tcp/p80"]
    assert ext[0].startswith("ip saddr 10.244.0.0/16 goto service-")
    assert ext[1].startswith("fib saddr type local jump mark-for-masquerade")
    assert ext[-1] == "goto local-ULMVA6XW-ns1/svc1/tcp/p80"
    assert len(s.chains["local-ULMVA6XW-ns1/svc1/tcp/p80"]) == 1  # the one local endpoint
    assert not any("jump mark-for-masquerade" == r for r in ext)  # source address kept


def test_affinity_sets_and_rules():
    s = service_nft(entry(affinity_timeout=600), None)
    assert s.affinity_sets == {f"affinity-{endpoint_base(SPN, 'tcp', Endpoint(ip, 8080))}": 600
                               for ip in ("10.244.1.10", "10.244.1.11")}
    a10, a11 = s.affinity_sets
    assert s.chains["service-ULMVA6XW-ns1/svc1/tcp/p80"] == [
        f"ip saddr @{a10} meta l4proto tcp update @{a10} {{ ip saddr }} dnat to 10.244.1.10:8080",
        f"ip saddr @{a11} meta l4proto tcp update @{a11} {{ ip saddr }} dnat to 10.244.1.11:8080",
        f"meta l4proto tcp numgen random mod 2 == 0 update @{a10} {{ ip saddr }} dnat to 10.244.1.10:8080",
        f"meta l4proto tcp update @{a11} {{ ip saddr }} dnat to 10.244.1.11:8080",
    ]


def test_load_balancer_source_ranges_firewall():
    s = service_nft(entry(load_balancer_ips=("198.51.100.7",), load_balancer_source_ranges=("192.0.2.0/24",)), None)
    fw = "firewall-ULMVA6XW-ns1/svc1/tcp/p80"
    assert s.chains[fw] == ["ip saddr != { 192.0.2.0/24 } drop"]
    assert ("firewall-ips", "198.51.100.7 . tcp . 80", f"goto {fw}", "ns1/svc1:p80") in s.elements


# -- partial vs full, through a strict model of the table -------------------------

class Table:
    """Just enough of an nftables table to replay our transactions strictly."""

    CMD = re.compile(r"^(add|flush|delete) (table|chain|rule|map|set|element) ip kube-proxy ?(\S*) ?(.*)$")

    def __init__(self):
        self.chains: dict[str, list[str]] = {}
        self.maps: dict[str, dict[str, str]] = {}
        self.sets: dict[str, str] = {}

    def refs(self) -> set[str]:
        text = "\n".join(r for rs in self.chains.values() for r in rs)
        text += "\n" + "\n".join(v for m in self.maps.values() for v in m.values())
        return set(re.findall(r"(?:goto|jump) ([^\s,]+)", text)) | set(re.findall(r"@([^\s,]+)", text))

    def run(self, transaction: str) -> None:
        for line in transaction.splitlines():
            m = self.CMD.match(line)
            assert m, line
            op, kind, name, rest = m.groups()
            if kind == "chain":
                if op == "add":
                    self.chains.setdefault(name, [])
                elif op == "flush":
                    self.chains[name].clear()  # KeyError = flushing a missing chain
                else:
                    assert not self.chains.pop(name), f"deleting non-empty {name}"
                    assert name not in self.refs(), f"deleting referenced {name}"
            elif kind == "rule":
                assert name in self.chains, line
                self.chains[name].append(rest)
            elif kind == "map":
                if op == "add":
                    self.maps.setdefault(name, {})
                else:
                    self.maps[name].clear()
            elif kind == "set":
                if op == "add":
                    assert self.sets.get(name, rest) == rest, f"{name} exists with other flags"
                    self.sets[name] = rest
                    self.maps.setdefault(name, {})
                elif op == "flush":
                    self.maps[name].clear()
                else:
                    del self.sets[name]
                    del self.maps[name]
                    assert name not in self.refs(), f"deleting referenced set {name}"
            elif kind == "element":
                body = rest.strip()[1:-1].strip()
                for item in body.split(", "):
                    key, _, value = item.partition(" : ")
                    key = key.split(" comment ")[0]
                    if op == "add":
                        assert self.maps[name].get(key, item) == item, f"{key} exists in {name}"
                        self.maps[name][key] = item
                    else:
                        del self.maps[name][key]
        for ref in self.refs():
            assert ref in self.chains or ref in self.sets or ref in self.maps, f"dangling reference to {ref}"

    def state(self):
        return ({c: r for c, r in self.chains.items()}, self.maps, self.sets)


def random_state(rng: random.Random, n: int) -> dict[ServicePortName, ServiceEntry]:
    out = {}
    for i in range(n):
        if rng.random() < 0.2:
            continue
        spn = ServicePortName(f"ns{i % 3}", f"svc{i}", rng.choice(["", "http"]), rng.choice(["TCP", "UDP"]))
        neps = rng.choice([0, 1, 2, 3, VMAP_MIN_ENDPOINTS])
        eps = tuple(f"10.244.{rng.randint(1, 2)}.{rng.randint(1, 40)}" for _ in range(neps))
        local = tuple(e for e in eps if rng.random() < 0.5)
        kw = {}
        if rng.random() < 0.4:
            kw["node_port"] = 30000 + i
        if rng.random() < 0.3:
            kw["external_ips"] = (f"203.0.113.{rng.randint(1, 4)}",)  # shared keys on purpose
        if rng.random() < 0.2:
            kw["load_balancer_ips"] = (f"198.51.100.{i}",)
            if rng.random() < 0.5:
                kw["load_balancer_source_ranges"] = ("192.0.2.0/24",)
        if rng.random() < 0.3:
            kw["affinity_timeout"] = rng.choice([60, 600])
        if kw.get("node_port") or kw.get("external_ips") or kw.get("load_balancer_ips"):
            kw["external_policy_local"] = rng.random() < 0.4
        kw["internal_policy_local"] = rng.random() < 0.15
        out[spn] = entry(spn, f"10.96.0.{i + 1}", eps, local, protocol=spn.protocol, **kw)
    return out


@pytest.mark.parametrize("seed", range(12))
def test_partial_syncs_leave_what_a_full_sync_leaves(seed):
    rng = random.Random(seed)
    dp, table = NftablesDataPlane(), Table()
    dp._need_full = False
    states = [random_state(rng, 12) for _ in range(8)]
    for k, services in enumerate(states):
        full, changed, previous = dp.compute(DesiredState(services), full=(k == 0))
        table.run(dp.render_full() if full else dp.render_partial(changed, previous))
    fresh, fresh_table = NftablesDataPlane(), Table()
    full, _, _ = fresh.compute(DesiredState(states[-1]), full=True)
    fresh_table.run(fresh.render_full())
    assert table.state() == fresh_table.state()
    # and a full resync on top of the partial history changes nothing
    full, _, _ = dp.compute(DesiredState(states[-1]), full=True)
    table.run(dp.render_full())
    assert table.state() == fresh_table.state()


def test_one_service_change_touches_only_that_service():
    services = {ServicePortName("default", f"s{i}", "http"): entry(ServicePortName("default", f"s{i}", "http"),
                                                                  f"10.96.1.{i + 1}") for i in range(50)}
    dp = NftablesDataPlane()
    dp._need_full = False  # as after a first sync() (which would also ask the kernel)
    dp.compute(DesiredState(services), full=True)
    dp.render_full()
    victim = ServicePortName("default", "s7", "http")
    services = dict(services)
    services[victim] = entry(victim, "10.96.1.8", eps=("10.244.1.10", "10.244.1.99"))
    full, changed, previous = dp.compute(DesiredState(services, changed=frozenset({victim})), full=False)
    text = dp.render_partial(changed, previous)
    assert not full and changed == {victim}
    assert all("default/s7/" in line or "hairpin-endpoints" in line for line in text.splitlines()), text
    # the service's address still leads to the same chain: only the new pod's hairpin pair comes and goes
    assert "service-ips" not in text and "10.244.1.99 . 10.244.1.99" in text


def test_other_modes_leftovers_are_deleted_with_the_jumps_into_them():
    from kubesvc.proxy.dataplanes.cleanup import removal_restore
    nat = "\n".join(["*nat", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]",
                     ":KUBE-SVC-ABC - [0:0]", ":KUBE-PORTALS-HOST - [0:0]", ":DOCKER - [0:0]",
                     '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
                     "-A OUTPUT -j KUBE-PORTALS-HOST", "-A OUTPUT -j DOCKER",
                     "-A KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-ABC", "COMMIT"])
    filt = "\n".join(["*filter", ":INPUT ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]",
                      "-A INPUT -m conntrack --ctstate NEW -j KUBE-SERVICES",
                      "-A KUBE-SERVICES -d 10.96.0.2/32 -j REJECT", "COMMIT"])
    text = removal_restore({"nat": nat, "filter": filt}, "nftables")
    assert "-X KUBE-SVC-ABC" in text and "-X KUBE-PORTALS-HOST" in text and "-D OUTPUT -j KUBE-PORTALS-HOST" in text
    assert '-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in text
    assert "-D INPUT -m conntrack --ctstate NEW -j KUBE-SERVICES" in text  # the REJECTs go too
    assert "DOCKER" not in text
    assert removal_restore({"nat": "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT", "filter": ""}, "nftables") == ""
