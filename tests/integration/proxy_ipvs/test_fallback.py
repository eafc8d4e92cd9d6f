"""The seed's fallback on this machine's kernel, which has no IPVS (root).

"1.11之后使用ipvs，若没有安装ipvs模块，自动降级为iptables": `kubesvc proxy --mode ipvs`
logs one line saying why and runs the iptables data plane; `--no-fallback` exits
with that reason instead; `--mode auto` picks iptables here and says why. The
proxy runs inside a throw-away namespace beside a real API server, and a Service
made with kubectl must show up in that namespace's `iptables-save`.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from kubesvc.proxy.modes import probe_ipvs
from tests.integration.proxy.lab import wait_for
from tests.lib.cluster import APIServer
from tests.lib.netns import Topology

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    ok, why = probe_ipvs("rr")
    if ok:
        pytest.skip(f"this kernel has IPVS ({why}): the fallback cannot be shown here")
    topo = Topology()
    ns = topo.ns("ipvsfb")
    api = APIServer(tmp_path_factory.mktemp("api"), netns=ns)
    try:
        api.start()
        yield topo, ns, api
    finally:
        api.stop()
        topo.close()


def proxy(topo: Topology, ns: str, api: APIServer, *args: str) -> subprocess.Popen:
    return topo.popen(ns, [sys.executable, "-m", "kubesvc.cli", "proxy", "--server", api.url, "--node-name", "n1",
                           "--healthz-bind-address", "", "--metrics-bind-address", "", "--min-sync-period", "100ms",
                           *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


SVC = """
apiVersion: v1
kind: Service
metadata: {name: fb, namespace: default}
spec:
  clusterIP: 10.96.77.7
  ports: [{port: 80, targetPort: 8080}]
"""


def test_mode_ipvs_without_ipvs_falls_back_to_iptables_with_one_line(node):
    topo, ns, api = node
    api.kubectl("apply", "-f", "-", input=SVC)
    p = proxy(topo, ns, api, "--mode", "ipvs")
    lines: list[str] = []
    try:
        def programmed() -> bool:
            return "10.96.77.7" in topo.run(ns, "iptables-save -t filter").stdout  # REJECT: no endpoints
        assert wait_for(programmed, timeout=30), topo.run(ns, "iptables-save").stdout
    finally:
        p.kill()
        lines = p.communicate()[0].splitlines()
    fallback = [line for line in lines if "falling back to iptables" in line]
    assert len(fallback) == 1, lines
    assert "--mode=ipvs" in fallback[0] and "ip_vs" in fallback[0], fallback
    assert "proxy mode: iptables" in fallback[0]
    # nothing of the ipvs layout was made
    assert "kube-ipvs0" not in topo.run(ns, "ip -o link").stdout


def test_no_fallback_exits_with_the_reason(node):
    topo, ns, api = node
    r = topo.run(ns, f"{sys.executable} -m kubesvc.cli proxy --server {api.url} --mode ipvs --no-fallback",
                 check=False, timeout=60)
    assert r.returncode != 0
    assert "--mode=ipvs" in r.stderr and "ip_vs" in r.stderr and "--no-fallback" in r.stderr, r.stderr


def test_auto_picks_iptables_here_and_says_why(node):
    topo, ns, api = node
    api.kubectl("delete", "service", "fb")
    assert wait_for(lambda: "10.96.77.7" not in topo.run(ns, "iptables-save -t filter").stdout, timeout=5) \
        or True  # no proxy runs now: the old rule stays until the new one syncs
    api.kubectl("apply", "-f", "-", input=SVC.replace("fb", "fb2").replace("10.96.77.7", "10.96.77.8"))
    p = proxy(topo, ns, api, "--mode", "auto")
    try:
        assert wait_for(lambda: "10.96.77.8" in topo.run(ns, "iptables-save -t filter").stdout, timeout=30)
    finally:
        p.kill()
        lines = p.communicate()[0].splitlines()
    mode_lines = [line for line in lines if "proxy mode:" in line]
    assert len(mode_lines) == 1 and "proxy mode: iptables" in mode_lines[0], lines
    assert "ip_vs" in mode_lines[0] and "using iptables" in mode_lines[0]
