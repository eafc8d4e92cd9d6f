"""iptables rule computation: kube-proxy's layout, and partial syncs equal to full ones."""

from __future__ import annotations

import random

from kubesvc.proxy.dataplanes.iptables import Backend, IptablesDataPlane, detect_backend, service_rules
from kubesvc.proxy.model import (DesiredState, Endpoint, EndpointSet, ServiceEntry, ServicePort,
                                 ServicePortName)


def entry(name, ip, eps, **kw):
    spn = ServicePortName("default", name, "http", "TCP")
    return spn, ServiceEntry(ServicePort(spn, ip, 80, "TCP", **kw),
                             EndpointSet.categorize([Endpoint(e, 8080, "n1", True) for e in eps]))


def test_statistic_spreading_and_affinity():
    _, e = entry("a", "10.96.0.5", ["10.244.0.2", "10.244.0.3", "10.244.0.4"], affinity_timeout=60)
    r = service_rules(e, "10.244.0.0/16")
    svc = next(c for c in r.chains if c.startswith("KUBE-SVC-"))
    lines = r.chains[svc]
    assert "! -s 10.244.0.0/16 -j KUBE-MARK-MASQ" in lines[0]
    assert sum("--rcheck --seconds 60 --reap" in line for line in lines) == 3
    probs = [line.split("--probability ")[1].split()[0] for line in lines if "--probability" in line]
    assert probs == ["0.3333333333", "0.5000000000"]
    seps = [c for c in r.chains if c.startswith("KUBE-SEP-")]
    assert len(seps) == 3 and all("--set" in r.chains[s][1] for s in seps)


def test_no_endpoints_reject_and_local_drop():
    _, e = entry("b", "10.96.0.6", [], node_port=30001)
    r = service_rules(e, None)
    assert r.chains == {}
    assert any("-j REJECT" in line for line in r.shared[("filter", "KUBE-SERVICES")])
    assert any("--dport 30001 -j REJECT" in line for line in r.shared[("filter", "KUBE-EXTERNAL-SERVICES")])
    spn = ServicePortName("default", "c", "http", "TCP")
    e = ServiceEntry(ServicePort(spn, "10.96.0.7", 80, node_port=30002, external_policy_local=True),
                     EndpointSet.categorize([Endpoint("10.244.2.2", 8080, "n2", False)]))
    r = service_rules(e, None)
    assert any("has no local endpoints" in line and "-j DROP" in line
               for line in r.shared[("filter", "KUBE-EXTERNAL-SERVICES")])


def _random_state(rng, n):
    out = {}
    for i in range(n):
        k = rng.randint(0, 3)
        spn, e = entry(f"s{i}", f"10.96.{i // 250}.{i % 250}", [f"10.244.{i % 200}.{j}" for j in range(k)],
                       node_port=30000 + i if rng.random() < 0.3 else 0)
        out[spn] = e
    return out


def _apply(text: str, tables: dict[str, dict[str, list[str]]]) -> None:
    """A tiny model of iptables-restore --noflush, to compare partial against full."""
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = tables.setdefault(line[1:], {})
        elif line.startswith(":"):
            table[line[1:].split()[0]] = []
        elif line.startswith("-A "):
            table[line.split()[1]].append(line.split(" ", 2)[2])
        elif line.startswith("-I "):
            _, chain, pos, rest = line.split(" ", 3)
            table[chain].insert(int(pos) - 1, rest)
        elif line.startswith("-D "):
            _, chain, pos = line.split()
            del table[chain][int(pos) - 1]
        elif line.startswith("-X "):
            del table[line.split()[1]]


def test_partial_syncs_leave_what_a_full_sync_would():
    rng = random.Random(7)
    dp = IptablesDataPlane(Backend("nft"))
    state = _random_state(rng, 60)
    dp.compute(DesiredState(state), True)
    kernel: dict = {}
    _apply(dp.render_full(set()), kernel)
    dp._need_full = False
    for _ in range(15):
        new = dict(state)
        for spn in rng.sample(sorted(new), 6):
            del new[spn]
        new.update(_random_state(rng, 70))  # changes endpoints of some, re-adds others
        full, changed, old = dp.compute(DesiredState(new), False)
        _apply(dp.render_partial(changed, old), kernel)
        ref_dp = IptablesDataPlane(Backend("nft"))
        ref_dp.compute(DesiredState(new), True)
        ref: dict = {}
        _apply(ref_dp.render_full(set()), ref)
        assert kernel == ref
        state = new


def test_backend_flag_wins():
    assert detect_backend("legacy")[0].restore == "iptables-legacy-restore"
    assert detect_backend("nft")[0].save == "iptables-nft-save"


def test_large_cluster_mode_drops_endpoint_comments_and_flips_cleanly():
    rng = random.Random(11)
    dp = IptablesDataPlane(Backend("legacy"))
    kernel: dict = {}
    for n in (300, 900, 300):  # ~450 endpoints, ~1350 (large), ~450 again
        state = _random_state(rng, n)
        full, changed, old = dp.compute(DesiredState(state), False)
        text = dp.render_full(set(old_c for r in old.values() for old_c in r.chains) - {
            c for r in dp._rules.values() for c in r.chains}) if full else dp.render_partial(changed, old)
        _apply(text, kernel)
        ref_dp = IptablesDataPlane(Backend("legacy"))
        ref_dp.compute(DesiredState(state), True)
        ref: dict = {}
        _apply(ref_dp.render_full(set()), ref)
        assert {k: v for k, v in kernel["nat"].items() if v or k in ref["nat"]} == ref["nat"]
        seps = [line for c, lines in kernel["nat"].items() if c.startswith("KUBE-SEP-") for line in lines]
        assert dp.large == (n == 900)
        assert any("--comment" in line for line in seps) != dp.large


def test_internal_traffic_policy_local():
    spn = ServicePortName("default", "itp", "http", "TCP")
    remote = EndpointSet.categorize([Endpoint("10.244.2.2", 8080, "n2", False)])
    r = service_rules(ServiceEntry(ServicePort(spn, "10.96.0.8", 80, internal_policy_local=True), remote), None)
    (line,) = r.shared[("filter", "KUBE-SERVICES")]
    assert "has no local endpoints" in line and line.endswith("-j DROP")
    both = EndpointSet.categorize([Endpoint("10.244.2.2", 8080, "n2", False), Endpoint("10.244.1.2", 8080, "n1", True)])
    r = service_rules(ServiceEntry(ServicePort(spn, "10.96.0.8", 80, internal_policy_local=True), both), None)
    (line,) = r.shared[("nat", "KUBE-SERVICES")]
    assert line.endswith("-j KUBE-SVL-" + line.rsplit("KUBE-SVL-", 1)[1])
    svl = next(c for c in r.chains if c.startswith("KUBE-SVL-"))
    assert len(r.chains[svl]) == 1 and not any(c.startswith("KUBE-SVC-") for c in r.chains)
