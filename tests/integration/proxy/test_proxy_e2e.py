"""`kubesvc proxy` against the real API server, driven by the real kubectl (root).

The API server runs inside the node namespace; Services and EndpointSlices are
created with kubectl (manual slices: no controllers here), the LoadBalancer
ingress IP is set with `kubectl patch --subresource=status`, and curl in the
client namespace is the oracle — the seed's
"client -> NodeIP:NodePort -> ClusterIP:ServicePort -> PodIP:containerPort".
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from tests.integration.proxy.harness import kubesvc_proxy
from tests.integration.proxy.lab import NODE_IP, ProxyLab, wait_for
from tests.integration.proxy.objects import SEED_SVC, seed_slice
from tests.lib.cluster import APIServer

pytestmark = pytest.mark.root


@pytest.fixture(scope="module", params=["iptables", "userspace"])
def cluster(request, tmp_path_factory):
    lab = ProxyLab().start()
    api = APIServer(tmp_path_factory.mktemp("api"), netns=lab.node)
    procs: list[subprocess.Popen] = []
    try:
        api.start()
        log = open(api.data_dir / "proxy.log", "ab")

        def start_proxy() -> subprocess.Popen:
            p = kubesvc_proxy(lab, api.url, request.param, log)
            procs.append(p)
            return p

        yield lab, api, start_proxy, request.param
    finally:
        api.stop()
        lab.close()


ALL = {"pod0", "pod1", "pod2"}


def test_seed_nodeport_transcript_and_lifecycle(cluster):
    lab, api, start_proxy, mode = cluster
    api.kubectl("apply", "-f", "-", input=SEED_SVC)
    api.kubectl("apply", "-f", "-", input=seed_slice([p.ip for p in lab.pods]))
    proxy = start_proxy()
    url = f"http://{NODE_IP}:30080/hostname.html"
    assert wait_for(lambda: set(lab.names(lab.client, url, 30)) == ALL, timeout=15), \
        (api.data_dir / "proxy.log").read_text()[-3000:]
    assert set(lab.names(lab.node, "http://10.99.99.99/hostname.html", 30)) == ALL

    # health and metrics, named as kube-proxy's
    hz = lab.curl(lab.node, "http://127.0.0.1:10256/healthz", "-w", "' %{http_code}'").stdout
    assert hz.endswith(" 200") and "lastUpdated" in hz
    metrics = lab.curl(lab.node, "http://127.0.0.1:10249/metrics").stdout
    for name in ("kubeproxy_sync_proxy_rules_duration_seconds_bucket",
                 "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                 "kubeproxy_network_programming_duration_seconds_bucket"):
        assert name in metrics

    # endpoint removal is effective within 2 s of kubectl returning
    api.kubectl("apply", "-f", "-", input=seed_slice([lab.pods[0].ip, lab.pods[1].ip]))
    t0 = time.monotonic()
    assert wait_for(lambda: "pod2" not in lab.names(lab.client, url, 10), timeout=2)
    assert time.monotonic() - t0 < 2

    # a LoadBalancer ingress IP set through the status subresource
    api.kubectl("patch", "svc", "myapp", "-p", '{"spec":{"type":"LoadBalancer"}}')
    api.kubectl("patch", "svc", "myapp", "--subresource=status", "--type=merge",
                "-p", '{"status":{"loadBalancer":{"ingress":[{"ip":"198.51.100.7"}]}}}')
    assert wait_for(lambda: set(lab.names(lab.client, "http://198.51.100.7/", 20)) == {"pod0", "pod1"},
                    timeout=5)

    # no endpoints: refused at once
    api.kubectl("delete", "endpointslice", "myapp-1")
    assert wait_for(lambda: lab.curl(lab.client, url).returncode == 7, timeout=3)

    if mode == "iptables":
        api.kubectl("apply", "-f", "-", input=seed_slice([p.ip for p in lab.pods]))
        assert wait_for(lambda: set(lab.names(lab.client, url, 30)) == ALL, timeout=5)
        time.sleep(0.3)
        before = lab.topo.run(lab.node, "iptables-save").stdout
        # the rules, not the packet counters (the test's own requests move INPUT's)
        strip = lambda s: [re.sub(r"\[\d+:\d+\]$", "[0:0]", l) for l in s.splitlines()  # noqa: E731
                           if not l.startswith("#")]
        os.killpg(proxy.pid, signal.SIGKILL)
        proxy.wait()
        assert set(lab.names(lab.client, url, 20)) == ALL  # the kernel keeps serving without us
        start_proxy()
        assert wait_for(lambda: lab.curl(lab.node, "http://127.0.0.1:10256/healthz").returncode == 0
                        and "lastUpdated\":\"2" in lab.curl(lab.node, "http://127.0.0.1:10256/healthz").stdout,
                        timeout=10)
        after = lab.topo.run(lab.node, "iptables-save").stdout
        assert strip(after) == strip(before)
