"""The record rules, through real queries (dig and dnspython) against the real server sockets.

The zone is fed directly here (no API server) so every rule is checked fast and in
isolation; tests/integration/dns checks the same server fed by the real API.
"""

from __future__ import annotations

import re

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from kubesvc.dns.records import ClusterZone, EndpointInfo, PortInfo, ServiceInfo
from tests.unit.dns.dns_harness import ZoneServer, dig, query, rrset_texts

HTTP = PortInfo("http", "TCP", 80)
DNSP = PortInfo("dns", "UDP", 53)


@pytest.fixture(scope="module")
def srv():
    s = ZoneServer(ClusterZone("cluster.local", ttl=5))
    z = s.zone
    s.change(z.set_namespace, "default", True)
    s.change(z.set_namespace, "kube-system", True)
    s.change(z.set_service, "default", "redis",
             ServiceInfo("default", "redis", ("10.97.97.97",), ports=(PortInfo("redis", "TCP", 6379),)))
    s.change(z.set_service, "kube-system", "kube-dns",
             ServiceInfo("kube-system", "kube-dns", ("10.96.0.10",), ports=(DNSP, PortInfo("dns-tcp", "TCP", 53))))
    s.change(z.set_service, "default", "myapp-svc-headless",
             ServiceInfo("default", "myapp-svc-headless", headless=True, ports=(HTTP,)))
    s.change(z.set_slice, "default", "myapp-svc-headless-x1", "myapp-svc-headless",
             (EndpointInfo("10.244.2.29", None, (HTTP,)), EndpointInfo("10.244.1.38", None, (HTTP,)),
              EndpointInfo("10.244.2.30", "web-2", (HTTP,))))
    s.change(z.set_service, "default", "empty", ServiceInfo("default", "empty", headless=True, ports=(HTTP,)))
    s.change(z.set_service, "default", "ext", ServiceInfo("default", "ext", external_name="redis.default.svc.cluster.local"))
    s.change(z.set_service, "default", "dual",
             ServiceInfo("default", "dual", ("10.96.5.5", "fd00::5"), ports=(HTTP, PortInfo("", "TCP", 81))))
    s.change(z.set_service, "default", "big", ServiceInfo("default", "big", headless=True, ports=(HTTP,)))
    s.change(z.set_slice, "default", "big-1", "big",
             tuple(EndpointInfo(f"10.244.9.{i}", None, (HTTP,)) for i in range(1, 61)))
    yield s
    s.stop()


def test_seed_dig_a_record(srv):
    out = dig(srv, "-t", "A", "redis.default.svc.cluster.local.")
    assert "status: NOERROR" in out
    assert re.search(r"flags: qr aa rd; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1", out)
    assert "EDNS: version: 0, flags:; udp: 4096" in out
    assert re.search(r"redis\.default\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.97\.97\.97", out)


def test_seed_dig_headless_gives_every_ready_endpoint(srv):
    out = dig(srv, "-t", "A", "myapp-svc-headless.default.svc.cluster.local.")
    assert "ANSWER: 3" in out
    ips = re.findall(r"myapp-svc-headless\.default\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+(\S+)", out)
    assert sorted(ips) == ["10.244.1.38", "10.244.2.29", "10.244.2.30"]


def test_case_of_the_query_is_kept(srv):
    r = query(srv, "ReDiS.DeFault.SVC.cluster.LOCAL.")
    assert r.rcode() == dns.rcode.NOERROR
    assert r.answer[0].name.to_text() == "ReDiS.DeFault.SVC.cluster.LOCAL."
    # asked twice: the second answer comes from the prebuilt cache and keeps its own case
    r2 = query(srv, "REDIS.default.svc.cluster.local.")
    assert r2.answer[0].name.to_text() == "REDIS.default.svc.cluster.local."
    assert r2.question[0].name.to_text() == "REDIS.default.svc.cluster.local."


def _soa(msg):
    assert len(msg.authority) == 1 and msg.authority[0].rdtype == dns.rdatatype.SOA
    return msg.authority[0]


def test_nxdomain_carries_the_soa(srv):
    for _ in range(2):  # built, then from the cache
        r = query(srv, "nope.default.svc.cluster.local.")
        assert r.rcode() == dns.rcode.NXDOMAIN
        soa = _soa(r)
        assert soa.name.to_text() == "cluster.local."
        rd = soa[0]
        assert (rd.mname.to_text(), rd.rname.to_text()) == ("ns.dns.cluster.local.", "hostmaster.cluster.local.")
        assert (rd.refresh, rd.retry, rd.expire, rd.minimum) == (7200, 1800, 86400, 5)
        assert rd.serial == srv.zone.serial


def test_nodata_for_a_name_with_other_types(srv):
    r = query(srv, "redis.default.svc.cluster.local.", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    _soa(r)
    r = query(srv, "default.svc.cluster.local.", "A")  # namespace: an empty non-terminal
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    r = query(srv, "nosuchns.svc.cluster.local.", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN
    r = query(srv, "redis.default.cluster.local.", "A")  # neither svc nor pod
    assert r.rcode() == dns.rcode.NXDOMAIN


def test_headless_without_ready_endpoints_is_nxdomain(srv):
    assert query(srv, "empty.default.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN


def test_endpoint_names_hostname_else_dashed_ip(srv):
    r = query(srv, "web-2.myapp-svc-headless.default.svc.cluster.local.")
    assert rrset_texts(r) == ["web-2.myapp-svc-headless.default.svc.cluster.local. 5 IN A 10.244.2.30"]
    r = query(srv, "10-244-2-29.myapp-svc-headless.default.svc.cluster.local.")
    assert [rd.address for rd in r.answer[0]] == ["10.244.2.29"]
    assert query(srv, "10-9-9-9.myapp-svc-headless.default.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN


def test_srv_named_ports_weights_and_glue(srv):
    r = query(srv, "_http._tcp.myapp-svc-headless.default.svc.cluster.local.", "SRV")
    srvs = sorted((rd.priority, rd.weight, rd.port, rd.target.to_text()) for rd in r.answer[0])
    assert srvs == [(0, 33, 80, "10-244-1-38.myapp-svc-headless.default.svc.cluster.local."),
                    (0, 33, 80, "10-244-2-29.myapp-svc-headless.default.svc.cluster.local."),
                    (0, 33, 80, "web-2.myapp-svc-headless.default.svc.cluster.local.")]
    glue = {rr.name.to_text(): rr[0].address for rr in r.additional}
    assert glue["web-2.myapp-svc-headless.default.svc.cluster.local."] == "10.244.2.30"
    r = query(srv, "_redis._tcp.redis.default.svc.cluster.local.", "SRV")
    assert [(rd.priority, rd.weight, rd.port, rd.target.to_text()) for rd in r.answer[0]] == \
        [(0, 100, 6379, "redis.default.svc.cluster.local.")]
    assert rrset_texts(r, "additional") == ["redis.default.svc.cluster.local. 5 IN A 10.97.97.97"]
    # wrong protocol or port name: no such name
    assert query(srv, "_redis._udp.redis.default.svc.cluster.local.", "SRV").rcode() == dns.rcode.NXDOMAIN
    assert query(srv, "_dns._udp.kube-dns.kube-system.svc.cluster.local.", "SRV").answer[0][0].port == 53


def test_srv_on_the_service_name_lists_every_port(srv):
    r = query(srv, "dual.default.svc.cluster.local.", "SRV")
    assert sorted(rd.port for rd in r.answer[0]) == [80, 81]
    assert {rd.weight for rd in r.answer[0]} == {25}  # four (port, family) records -> 100/4, as CoreDNS
    assert sorted(rr.rdtype for rr in r.additional) == [dns.rdatatype.A, dns.rdatatype.AAAA]


def test_dual_stack_a_and_aaaa(srv):
    assert rrset_texts(query(srv, "dual.default.svc.cluster.local.", "AAAA")) == \
        ["dual.default.svc.cluster.local. 5 IN AAAA fd00::5"]
    assert rrset_texts(query(srv, "dual.default.svc.cluster.local.", "A")) == \
        ["dual.default.svc.cluster.local. 5 IN A 10.96.5.5"]


def test_ptr_for_cluster_ips_and_endpoints(srv):
    r = query(srv, "97.97.97.10.in-addr.arpa.", "PTR")
    assert rrset_texts(r) == ["97.97.97.10.in-addr.arpa. 5 IN PTR redis.default.svc.cluster.local."]
    out = dig(srv, "-x", "10.244.2.30")
    assert "web-2.myapp-svc-headless.default.svc.cluster.local." in out
    r = query(srv, dns.reversename.from_address("fd00::5"), "PTR")
    assert r.answer[0][0].target.to_text() == "dual.default.svc.cluster.local."


def test_externalname_cname_chased_inside_the_zone(srv):
    r = query(srv, "ext.default.svc.cluster.local.")
    assert rrset_texts(r) == ["ext.default.svc.cluster.local. 5 IN CNAME redis.default.svc.cluster.local.",
                              "redis.default.svc.cluster.local. 5 IN A 10.97.97.97"]


def test_dns_version_ns_apex_and_soa(srv):
    assert rrset_texts(query(srv, "dns-version.cluster.local.", "TXT")) == ['dns-version.cluster.local. 5 IN TXT "1.1.0"']
    r = query(srv, "cluster.local.", "NS")
    assert rrset_texts(r) == ["cluster.local. 5 IN NS ns.dns.cluster.local."]
    assert rrset_texts(r, "additional") == ["ns.dns.cluster.local. 5 IN A 10.96.0.10"]
    r = query(srv, "cluster.local.", "SOA")
    assert r.answer[0][0].mname.to_text() == "ns.dns.cluster.local."
    assert rrset_texts(query(srv, "ns.dns.cluster.local.")) == ["ns.dns.cluster.local. 5 IN A 10.96.0.10"]


def test_pod_records_insecure(srv):
    assert rrset_texts(query(srv, "10-244-1-7.default.pod.cluster.local.")) == \
        ["10-244-1-7.default.pod.cluster.local. 5 IN A 10.244.1.7"]
    assert query(srv, "not-an-ip.default.pod.cluster.local.").rcode() == dns.rcode.NXDOMAIN
    assert query(srv, "10-244-1-7.nosuchns.pod.cluster.local.").rcode() == dns.rcode.NXDOMAIN


def test_pod_records_verified_and_disabled():
    s = ZoneServer(ClusterZone("cluster.local", ttl=5, pods="verified"))
    try:
        s.change(s.zone.set_namespace, "default", True)
        assert query(s, "10-244-1-7.default.pod.cluster.local.").rcode() == dns.rcode.NXDOMAIN
        s.change(s.zone.set_pod_ip, "default", "10.244.1.7", +1)
        assert rrset_texts(query(s, "10-244-1-7.default.pod.cluster.local.")) == \
            ["10-244-1-7.default.pod.cluster.local. 5 IN A 10.244.1.7"]
        s.change(s.zone.set_pod_ip, "default", "10.244.1.7", -1)
        assert query(s, "10-244-1-7.default.pod.cluster.local.").rcode() == dns.rcode.NXDOMAIN
        s.zone.pods_mode = "disabled"
        assert query(s, "10-244-1-8.default.pod.cluster.local.").rcode() == dns.rcode.NXDOMAIN
    finally:
        s.stop()


def test_no_wildcards(srv):
    assert query(srv, "*.default.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN
    assert query(srv, "any.default.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN
    assert query(srv, "_http._tcp.*.default.svc.cluster.local.", "SRV").rcode() == dns.rcode.NXDOMAIN


def test_axfr_refused(srv):
    out = dig(srv, "-t", "AXFR", "cluster.local.")
    assert "Transfer failed" in out or "REFUSED" in out
    q = dns.message.make_query("cluster.local.", "AXFR")
    r = dns.query.udp(q, srv.host, port=srv.port, timeout=2)
    assert r.rcode() == dns.rcode.REFUSED


def test_tcp_answers_the_same(srv):
    r = query(srv, "redis.default.svc.cluster.local.", tcp=True)
    assert rrset_texts(r) == ["redis.default.svc.cluster.local. 5 IN A 10.97.97.97"]
    out = dig(srv, "+tcp", "myapp-svc-headless.default.svc.cluster.local.")
    assert "ANSWER: 3" in out and "(TCP)" in out


def test_large_answer_truncates_and_dig_retries_over_tcp(srv):
    r = query(srv, "big.default.svc.cluster.local.", edns=False)
    assert r.flags & dns.flags.TC and not r.answer
    r = query(srv, "big.default.svc.cluster.local.", edns=True, payload=4096)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 60
    out = dig(srv, "+noedns", "big.default.svc.cluster.local.")
    assert "Truncated, retrying in TCP mode" in out
    assert "ANSWER: 60" in out


def test_changes_invalidate_only_what_they_touch(srv):
    z = srv.zone
    assert query(srv, "late.default.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN
    query(srv, "redis.default.svc.cluster.local.")  # cached
    redis_key = next(k for k in srv.cache.entries if k.startswith(b"\x05redis"))
    srv.change(z.set_service, "default", "late",
               ServiceInfo("default", "late", ("10.96.7.7",), ports=(HTTP,)))
    assert rrset_texts(query(srv, "late.default.svc.cluster.local.")) == \
        ["late.default.svc.cluster.local. 5 IN A 10.96.7.7"]
    assert redis_key in srv.cache.entries  # untouched answers stay prebuilt
    srv.change(z.set_service, "default", "late", None)
    assert query(srv, "late.default.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN
    # endpoint changes reach headless answers and PTRs
    srv.change(z.set_slice, "default", "empty-1", "empty", (EndpointInfo("10.244.3.3", None, (HTTP,)),))
    assert rrset_texts(query(srv, "empty.default.svc.cluster.local.")) == \
        ["empty.default.svc.cluster.local. 5 IN A 10.244.3.3"]
    assert query(srv, "3.3.244.10.in-addr.arpa.", "PTR").answer[0][0].target.to_text() == \
        "10-244-3-3.empty.default.svc.cluster.local."
    srv.change(z.set_slice, "default", "empty-1", None, None)
    assert query(srv, "empty.default.svc.cluster.local.").rcode() == dns.rcode.NXDOMAIN


def test_not_ready_endpoints_are_left_out():
    from kubesvc.dns.sources import slice_endpoints
    from lightkube.models.discovery_v1 import Endpoint, EndpointConditions, EndpointPort
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.discovery_v1 import EndpointSlice
    es = EndpointSlice(addressType="IPv4", metadata=ObjectMeta(name="x", namespace="default"),
                       ports=[EndpointPort(name="http", port=80, protocol="TCP")],
                       endpoints=[Endpoint(addresses=["10.0.0.1"], conditions=EndpointConditions(ready=True)),
                                  Endpoint(addresses=["10.0.0.2"], conditions=EndpointConditions(ready=False)),
                                  Endpoint(addresses=["10.0.0.3"], hostname="h3")])
    assert [(e.ip, e.hostname) for e in slice_endpoints(es)] == [("10.0.0.1", None), ("10.0.0.3", "h3")]


def test_an_ip_shared_by_two_services_has_both_ptrs(srv):
    z = srv.zone
    srv.change(z.set_service, "default", "a1", ServiceInfo("default", "a1", headless=True, ports=(HTTP,)))
    srv.change(z.set_service, "default", "a2", ServiceInfo("default", "a2", headless=True, ports=(HTTP,)))
    srv.change(z.set_slice, "default", "a1-x", "a1", (EndpointInfo("10.244.7.7", None, (HTTP,)),))
    assert [rd.target.to_text() for rd in query(srv, "7.7.244.10.in-addr.arpa.", "PTR").answer[0]] == \
        ["10-244-7-7.a1.default.svc.cluster.local."]
    srv.change(z.set_slice, "default", "a2-x", "a2", (EndpointInfo("10.244.7.7", "db", (HTTP,)),))
    assert sorted(rd.target.to_text() for rd in query(srv, "7.7.244.10.in-addr.arpa.", "PTR").answer[0]) == \
        ["10-244-7-7.a1.default.svc.cluster.local.", "db.a2.default.svc.cluster.local."]
    srv.change(z.set_slice, "default", "a1-x", None, None)
    assert [rd.target.to_text() for rd in query(srv, "7.7.244.10.in-addr.arpa.", "PTR").answer[0]] == \
        ["db.a2.default.svc.cluster.local."]


def test_the_portable_udp_server_answers_the_same():
    s = ZoneServer(ClusterZone("cluster.local", ttl=5), batch=False)
    try:
        s.change(s.zone.set_service, "default", "redis",
                 ServiceInfo("default", "redis", ("10.97.97.97",), ports=(PortInfo("redis", "TCP", 6379),)))
        for name in ("redis.default.svc.cluster.local.", "Redis.Default.svc.cluster.local."):
            assert rrset_texts(query(s, name)) == [f"{name} 5 IN A 10.97.97.97"]
        assert "udp: 4096" in dig(s, "redis.default.svc.cluster.local.")
    finally:
        s.stop()


def test_multi_address_answers_rotate(srv):
    name = "myapp-svc-headless.default.svc.cluster.local."
    firsts = {query(srv, name).answer[0][0].address for _ in range(6)}
    assert len(firsts) == 3  # every endpoint comes first in turn (CoreDNS loadbalance)
    firsts = {query(srv, name, tcp=True).answer[0][0].address for _ in range(6)}
    assert len(firsts) == 3
