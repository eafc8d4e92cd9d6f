"""`kubesvc dns` fed by the real API server, driven with the real kubectl and dig, all on loopback.

Services and EndpointSlices are created with kubectl (manual slices, as a user
would for a selector-less service); answers are checked with dig and dnspython.
No network namespace is needed: DNS is served and queried on 127.0.0.1 only, and
the upstream is a tiny server on loopback.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.lib.cluster import free_port
from tests.unit.dns.dns_harness import FakeUpstream, dig, query, rrset_texts

SEED = """
apiVersion: v1
kind: Service
metadata: {name: redis, namespace: default}
spec:
  clusterIP: 10.97.97.97
  ports: [{name: redis, port: 6379}]
---
apiVersion: v1
kind: Service
metadata: {name: myapp-svc-headless, namespace: default}
spec:
  clusterIP: None
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: myapp-svc-headless-abc
  namespace: default
  labels: {kubernetes.io/service-name: myapp-svc-headless}
addressType: IPv4
ports: [{name: http, port: 80, protocol: TCP}]
endpoints:
- addresses: [10.244.2.29]
  conditions: {ready: true}
- addresses: [10.244.1.38]
  conditions: {ready: true}
- addresses: [10.244.2.30]
  hostname: web-2
  conditions: {ready: true}
"""


class DNSProcess:
    """A `kubesvc dns` process on free loopback ports."""

    def __init__(self, server_url: str, *extra: str, upstream: str | None = None):
        self.host = "127.0.0.1"
        self.port = free_port()
        self.health, self.ready, self.metrics = free_port(), free_port(), free_port()
        argv = [sys.executable, "-m", "kubesvc.cli", "dns", "--server", server_url,
                "--listen", f"{self.host}:{self.port}", "--health-listen", f"127.0.0.1:{self.health}",
                "--ready-listen", f"127.0.0.1:{self.ready}", "--metrics-listen", f"127.0.0.1:{self.metrics}",
                # never the machine's resolv.conf: names outside the zone go to a loopback upstream only
                "--upstream", upstream or "127.0.0.1:9", *extra]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def get(self, port: int, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def wait_ready(self, timeout: float = 20) -> "DNSProcess":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stdout.read()
            try:
                if self.get(self.ready, "/ready")[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("kubesvc dns did not become ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def upstream():
    u = FakeUpstream({("example.org", "A"): ["192.0.2.10"]}, ttl=30)
    yield u
    u.stop()


@pytest.fixture(scope="module")
def kdns(apiserver, upstream):
    apiserver.kubectl("apply", "-f", "-", input=SEED)
    d = DNSProcess(apiserver.url, "--ttl", "5", upstream=upstream.addr).wait_ready()
    yield d
    d.stop()


def wait_answer(srv, name: str, want, rdtype: str = "A", timeout: float = 5.0) -> float:
    """Poll until `want(response)` holds; returns the seconds it took."""
    t0 = time.monotonic()
    while True:
        r = query(srv, name, rdtype)
        if want(r):
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{name}: still {r}")
        time.sleep(0.005)


def test_seed_transcript_a_record(kdns):
    out = dig(kdns, "-t", "A", "redis.default.svc.cluster.local.")
    assert "status: NOERROR" in out
    assert "flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1" in out
    assert "WARNING: recursion requested but not available" in out
    assert "EDNS: version: 0, flags:; udp: 4096" in out
    assert re.search(r"^redis\.default\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.97\.97\.97$", out, re.M)


def test_seed_transcript_headless(kdns):
    out = dig(kdns, "-t", "A", "myapp-svc-headless.default.svc.cluster.local.")
    assert "flags: qr aa rd; QUERY: 1, ANSWER: 3, AUTHORITY: 0, ADDITIONAL: 1" in out
    ips = re.findall(r"^myapp-svc-headless\.default\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+(\S+)$", out, re.M)
    assert sorted(ips) == ["10.244.1.38", "10.244.2.29", "10.244.2.30"]


def test_builtin_services_and_case_and_tcp(kdns):
    assert rrset_texts(query(kdns, "KUBE-DNS.kube-system.svc.Cluster.Local.")) == \
        ["KUBE-DNS.kube-system.svc.Cluster.Local. 5 IN A 10.96.0.10"]
    r = query(kdns, "kubernetes.default.svc.cluster.local.", "SRV", tcp=True)
    assert [(rd.port, rd.target.to_text()) for rd in r.answer[0]] == [(443, "kubernetes.default.svc.cluster.local.")]
    assert rrset_texts(query(kdns, "web-2.myapp-svc-headless.default.svc.cluster.local.")) == \
        ["web-2.myapp-svc-headless.default.svc.cluster.local. 5 IN A 10.244.2.30"]
    # ns.dns.<zone> is the kube-dns service's address
    assert rrset_texts(query(kdns, "cluster.local.", "NS"), "additional") == ["ns.dns.cluster.local. 5 IN A 10.96.0.10"]


def test_negative_answers_carry_the_soa(kdns):
    r = query(kdns, "nope.default.svc.cluster.local.")
    assert r.rcode() == dns.rcode.NXDOMAIN
    soa = r.authority[0][0]
    assert (soa.mname.to_text(), soa.rname.to_text(), soa.refresh, soa.retry, soa.expire, soa.minimum) == \
        ("ns.dns.cluster.local.", "hostmaster.cluster.local.", 7200, 1800, 86400, 5)
    r = query(kdns, "redis.default.svc.cluster.local.", "TXT")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.authority


def test_service_create_and_delete_are_answered_at_once(kdns, apiserver):
    name = "fresh.default.svc.cluster.local."
    assert query(kdns, name).rcode() == dns.rcode.NXDOMAIN  # negative answer now cached
    t_write = time.monotonic()
    apiserver.kubectl("create", "service", "clusterip", "fresh", "--tcp=80:8080")
    took = wait_answer(kdns, name, lambda r: r.rcode() == dns.rcode.NOERROR and r.answer) + \
        (time.monotonic() - t_write) * 0
    ip = apiserver.kubectl("get", "svc", "fresh", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert rrset_texts(query(kdns, name)) == [f"{name} 5 IN A {ip}"]
    apiserver.kubectl("delete", "service", "fresh")
    wait_answer(kdns, name, lambda r: r.rcode() == dns.rcode.NXDOMAIN)
    print(f"create answered {took * 1000:.0f} ms after kubectl returned")


def test_endpoint_readiness_and_slice_changes(kdns, apiserver):
    name = "myapp-svc-headless.default.svc.cluster.local."
    patch = ('[{"op":"replace","path":"/endpoints/0/conditions/ready","value":false}]')
    apiserver.kubectl("patch", "endpointslice", "myapp-svc-headless-abc", "--type=json", "-p", patch)
    wait_answer(kdns, name, lambda r: r.answer and len(r.answer[0]) == 2)
    assert sorted(rd.address for rd in query(kdns, name).answer[0]) == ["10.244.1.38", "10.244.2.30"]
    # PTR follows the endpoints too
    wait_answer(kdns, "29.2.244.10.in-addr.arpa.", lambda r: not r.answer or r.rcode() != 0, "PTR")
    patch = ('[{"op":"replace","path":"/endpoints/0/conditions/ready","value":true}]')
    apiserver.kubectl("patch", "endpointslice", "myapp-svc-headless-abc", "--type=json", "-p", patch)
    wait_answer(kdns, name, lambda r: r.answer and len(r.answer[0]) == 3)


def test_externalname_and_forwarding(kdns, apiserver, upstream):
    apiserver.kubectl("create", "service", "externalname", "ext", "--external-name", "example.org")
    wait_answer(kdns, "ext.default.svc.cluster.local.", lambda r: bool(r.answer))
    assert rrset_texts(query(kdns, "ext.default.svc.cluster.local.")) == \
        ["ext.default.svc.cluster.local. 5 IN CNAME example.org.", "example.org. 30 IN A 192.0.2.10"]
    out = dig(kdns, "example.org.")
    assert "192.0.2.10" in out


def test_health_ready_and_metrics(kdns):
    assert kdns.get(kdns.health, "/health") == (200, "OK")
    assert kdns.get(kdns.ready, "/ready") == (200, "OK")
    query(kdns, "redis.default.svc.cluster.local.")
    status, text = kdns.get(kdns.metrics, "/metrics")
    assert status == 200
    for metric in ("coredns_dns_requests_total", "coredns_dns_responses_total",
                   "coredns_dns_request_duration_seconds_bucket", "coredns_cache_hits_total",
                   "coredns_forward_requests_total", "coredns_build_info"):
        assert metric in text, metric
    hits = [float(m) for m in re.findall(r'coredns_cache_hits_total\{[^}]*type="success"[^}]*\} (\S+)', text)]
    assert hits and hits[0] >= 1


def test_servfail_for_cluster_names_until_synced(upstream):
    # An API server that is not there: the caches never sync.
    d = DNSProcess(f"http://127.0.0.1:{free_port()}", upstream=upstream.addr)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                status = d.get(d.health, "/health")[0]
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert status == 200
        assert d.get(d.ready, "/ready")[0] == 503
        assert query(d, "redis.default.svc.cluster.local.").rcode() == dns.rcode.SERVFAIL
        assert rrset_texts(query(d, "example.org."))[0].endswith("A 192.0.2.10")  # forwarding still works
    finally:
        d.stop()


def test_truncation_and_tcp_retry(kdns, apiserver):
    eps = "\n".join(f"- addresses: [10.244.50.{i}]\n  conditions: {{ready: true}}" for i in range(1, 61))
    apiserver.kubectl("apply", "-f", "-", input=f"""
apiVersion: v1
kind: Service
metadata: {{name: big, namespace: default}}
spec:
  clusterIP: None
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: big-1
  namespace: default
  labels: {{kubernetes.io/service-name: big}}
addressType: IPv4
ports: [{{name: http, port: 80, protocol: TCP}}]
endpoints:
{eps}
""")
    wait_answer(kdns, "big.default.svc.cluster.local.", lambda r: r.answer and len(r.answer[0]) == 60, timeout=10)
    r = query(kdns, "big.default.svc.cluster.local.", edns=False)
    assert r.flags & dns.flags.TC and not r.answer
    out = dig(kdns, "+noedns", "big.default.svc.cluster.local.")
    assert "Truncated, retrying in TCP mode" in out and "ANSWER: 60" in out


def test_forwarded_answers_expire_from_the_cache(apiserver):
    up = FakeUpstream({("short.example.org", "A"): ["192.0.2.20"]}, ttl=1)
    d = DNSProcess(apiserver.url, upstream=up.addr).wait_ready()
    try:
        for _ in range(3):
            assert rrset_texts(query(d, "short.example.org."))[0].endswith("A 192.0.2.20")
        n = up.queries
        time.sleep(1.3)
        query(d, "short.example.org.")
        assert up.queries == n + 1  # asked again once the 1 s TTL ran out
    finally:
        d.stop()
        up.stop()


def test_garbage_then_a_good_query(kdns):
    import os
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(500):
            s.sendto(os.urandom(i % 200 + 1), (kdns.host, kdns.port))
        good = dns.message.make_query("redis.default.svc.cluster.local.", "A").to_wire()
        for cut in range(12, len(good)):
            s.sendto(good[:cut], (kdns.host, kdns.port))
    assert kdns.proc.poll() is None
    assert rrset_texts(query(kdns, "redis.default.svc.cluster.local.")) == \
        ["redis.default.svc.cluster.local. 5 IN A 10.97.97.97"]
