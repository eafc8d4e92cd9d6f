"""Switching proxy modes leaves none of the previous mode's chains or jumps (root).

This kernel has no IPVS, but everything a mode switch touches besides IPVS is here:
iptables (legacy), ipset and links, inside a throw-away namespace. The oracle is
`iptables-save`, `ipset list -n` and `ip link`, as a user would look after
`kubesvc proxy --mode ipvs` replaced `--mode iptables` (and back, and on to nftables).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.lib.netns import Topology

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[3]
IPTABLES_MODE_CHAINS = re.compile(r"^:(KUBE-(SVC|SEP|EXT|FW|SVL)-\S+|KUBE-NODEPORTS|KUBE-EXTERNAL-SERVICES)\b", re.M)
IPVS_MODE_CHAINS = ("KUBE-NODE-PORT", "KUBE-LOAD-BALANCER", "KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER",
                    "KUBE-SOURCE-RANGES-FIREWALL")


@pytest.fixture
def ns():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not (shutil.which("iptables-legacy-restore") and shutil.which("ipset")):
        pytest.skip("iptables-legacy or ipset missing")
    topo = Topology()
    try:
        yield topo, topo.ns("modesw")
    finally:
        topo.close()


def run_step(topo: Topology, ns: str, step: str) -> None:
    env = f"PYTHONPATH={ROOT}:{ROOT / 'src'}"
    topo.run(ns, f"env {env} {sys.executable} -m tests.integration.proxy_ipvs.switch_steps {step}", cwd=ROOT)


def save(topo: Topology, ns: str, table: str) -> str:
    return topo.run(ns, f"iptables-legacy-save -t {table}").stdout


def test_iptables_then_ipvs_then_iptables_then_nftables(ns):
    topo, name = ns
    run_step(topo, name, "iptables")
    flt = save(topo, name, "filter")
    assert ":KUBE-EXTERNAL-SERVICES" in flt and "has no endpoints" in flt  # the REJECTs we must not keep
    assert "kubernetes load balancer firewall" in flt

    run_step(topo, name, "ipvs-rules")
    nat, flt = save(topo, name, "nat"), save(topo, name, "filter")
    assert not IPTABLES_MODE_CHAINS.search(nat) and not IPTABLES_MODE_CHAINS.search(flt), nat + flt
    assert ":KUBE-SERVICES" not in flt and "has no endpoints" not in flt, flt  # filter chains gone, jumps too
    assert "kubernetes load balancer firewall" not in flt, flt  # the iptables mode's firewall jumps
    assert "-j KUBE-SVC-" not in nat
    for chain, table in (("KUBE-IPVS-FILTER", flt), ("KUBE-NODE-PORT", nat), ("KUBE-LOAD-BALANCER", nat)):
        assert f":{chain} " in table
    assert flt.count("-j KUBE-PROXY-FIREWALL") == 2 and flt.count("-j KUBE-FORWARD") == 1, flt
    assert nat.count("-A PREROUTING") == 1 and nat.count("-A POSTROUTING") == 1, nat  # shared jumps kept once
    assert "KUBE-CLUSTER-IP" in topo.run(name, "ipset list -n").stdout

    topo.run(name, "ip link add kube-ipvs0 type bridge")  # this kernel has no dummy links; same name
    run_step(topo, name, "iptables")
    nat, flt = save(topo, name, "nat"), save(topo, name, "filter")
    for chain in IPVS_MODE_CHAINS:
        assert f":{chain} " not in nat + flt and f"-j {chain}" not in nat + flt, (chain, nat + flt)
    assert "kube-proxy firewall rules" not in flt and "kubernetes ipvs access filter" not in flt, flt
    assert ":KUBE-SVC-" in nat and "has no endpoints" in flt  # the iptables mode's own rules are back
    assert "KUBE-" not in topo.run(name, "ipset list -n").stdout  # sets destroyed once unreferenced
    assert "kube-ipvs0" not in topo.run(name, "ip -o link").stdout

    run_step(topo, name, "nftables")
    for table in ("nat", "filter"):
        text = save(topo, name, table)
        assert "KUBE-" not in text, text


def test_ipvs_rules_without_the_xt_ipvs_match(ns):
    """This kernel has no xt_ipvs: the ipvs plane still writes its rules, minus the
    KUBE-IPVS-OUT-FILTER drop, and says so (kube-proxy would fail the whole restore)."""
    topo, name = ns
    probe = topo.run(name, "sh -c 'iptables-legacy -N T && iptables-legacy -A T -m ipvs --vport 1 -j RETURN'",
                     check=False)
    topo.run(name, "sh -c 'iptables-legacy -F T; iptables-legacy -X T'", check=False)
    if probe.returncode == 0:
        pytest.skip("this kernel has the xt_ipvs match")
    env = f"PYTHONPATH={ROOT}:{ROOT / 'src'}"
    p = topo.run(name, f"env {env} {sys.executable} -m tests.integration.proxy_ipvs.switch_steps ipvs-no-xt-ipvs",
                 cwd=ROOT)
    assert "KUBE-IPVS-OUT-FILTER not written" in p.stderr, p.stderr
    flt = save(topo, name, "filter")
    assert ":KUBE-IPVS-OUT-FILTER - " in flt and "-A KUBE-IPVS-OUT-FILTER" not in flt
    assert "--match-set KUBE-LOAD-BALANCER-SOURCE-CIDR dst,dst,src -j RETURN" in flt, flt
    assert "--match-set KUBE-CLUSTER-IP" in save(topo, name, "nat")
