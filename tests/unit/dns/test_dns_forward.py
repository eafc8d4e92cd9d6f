"""Names outside the zone: forwarding to upstreams on loopback, failover, caching with expiry, chasing."""

from __future__ import annotations

import time

import dns.rcode
import pytest

from kubesvc.dns.records import ClusterZone, ServiceInfo
from tests.unit.dns.dns_harness import FakeUpstream, ZoneServer, dig, query, rrset_texts


@pytest.fixture
def upstream():
    u = FakeUpstream({("example.org", "A"): ["192.0.2.10"], ("www.example.org", "A"): ["192.0.2.11"],
                      ("10.2.0.192.in-addr.arpa", "PTR"): ["host.example.org."]}, ttl=1)
    yield u
    u.stop()


@pytest.fixture
def srv(upstream):
    s = ZoneServer(ClusterZone("cluster.local", ttl=5), upstreams=[(upstream.host, upstream.port)])
    s.change(s.zone.set_namespace, "default", True)
    yield s
    s.stop()


def test_forwards_names_outside_the_zone(srv, upstream):
    out = dig(srv, "example.org.")
    assert "status: NOERROR" in out and "192.0.2.10" in out
    r = query(srv, "nothere.example.org.")
    assert r.rcode() == dns.rcode.NXDOMAIN


def test_forwarded_answers_are_cached_then_expire(srv, upstream):
    n0 = upstream.queries
    for _ in range(3):
        assert rrset_texts(query(srv, "www.example.org."))[0].endswith("A 192.0.2.11")
    assert upstream.queries == n0 + 1  # cached for the upstream's TTL (1 s here, never more than 30 s)
    time.sleep(1.2)
    query(srv, "www.example.org.")
    assert upstream.queries == n0 + 2
    # negative answers are cached too
    query(srv, "missing.example.org.")
    query(srv, "missing.example.org.")
    assert upstream.queries == n0 + 3


def test_ptr_outside_the_cluster_falls_through_to_the_upstream(srv):
    r = query(srv, "10.2.0.192.in-addr.arpa.", "PTR")
    assert r.answer[0][0].target.to_text() == "host.example.org."


def test_failover_to_a_healthy_upstream(upstream):
    dead = FakeUpstream({}, ttl=1)
    dead.silent = True
    s = ZoneServer(ClusterZone("cluster.local"), upstreams=[(dead.host, dead.port), (upstream.host, upstream.port)])
    try:
        for _ in range(4):  # whichever is tried first, every query gets the healthy one's answer
            assert rrset_texts(query(s, "example.org.", timeout=5))[0].endswith("A 192.0.2.10")
            s.forwarder.cache.clear()
        assert not s.forwarder.upstreams[0].healthy or dead.queries == 0
        dead.silent = False  # comes back: the health check notices within a second or so
        deadline = time.monotonic() + 5
        while not s.forwarder.upstreams[0].healthy and time.monotonic() < deadline:
            time.sleep(0.1)
        assert s.forwarder.upstreams[0].healthy
    finally:
        s.stop()
        dead.stop()


def test_servfail_when_no_upstream_answers():
    dead = FakeUpstream({})
    dead.silent = True
    s = ZoneServer(ClusterZone("cluster.local"), upstreams=[(dead.host, dead.port)])
    try:
        assert query(s, "example.org.", timeout=5).rcode() == dns.rcode.SERVFAIL
    finally:
        s.stop()
        dead.stop()


def test_externalname_to_an_outside_name_is_chased_upstream(srv):
    srv.change(srv.zone.set_service, "default", "web", ServiceInfo("default", "web", external_name="www.example.org"))
    r = query(srv, "web.default.svc.cluster.local.")
    assert rrset_texts(r) == ["web.default.svc.cluster.local. 5 IN CNAME www.example.org.",
                              "www.example.org. 1 IN A 192.0.2.11"]


def test_loop_detection_drops_an_upstream_that_is_ourselves():
    s = ZoneServer(ClusterZone("cluster.local"))
    try:
        s.forwarder.upstreams.clear()
        from kubesvc.dns.forward import Upstream
        s.forwarder.upstreams.append(Upstream(s.host, s.port))
        s.lt.call(s.forwarder.detect_loops, s.zone.origin)
        assert s.forwarder.upstreams == []
    finally:
        s.stop()
