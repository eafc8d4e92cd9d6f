"""Garbage never stops the server: malformed packets get FORMERR or are dropped, the next query is answered."""

from __future__ import annotations

import os
import socket
import struct

import dns.message
import dns.rcode
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesvc.dns import wire
from kubesvc.dns.records import ClusterZone, PortInfo, ServiceInfo
from tests.unit.dns.dns_harness import ZoneServer, query, rrset_texts


@pytest.fixture(scope="module")
def srv():
    s = ZoneServer(ClusterZone("cluster.local", ttl=5))
    s.change(s.zone.set_service, "default", "redis",
             ServiceInfo("default", "redis", ("10.97.97.97",), ports=(PortInfo("redis", "TCP", 6379),)))
    yield s
    s.stop()


def _good(name="redis.default.svc.cluster.local.") -> bytes:
    return dns.message.make_query(name, "A").to_wire()


def _send(srv, payload: bytes, wait: float = 0.3) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(wait)
        s.sendto(payload, (srv.host, srv.port))
        if not wait:
            return None
        try:
            return s.recv(65535)
        except socket.timeout:
            return None


@given(st.binary(max_size=600))
@settings(max_examples=1500, deadline=None)
def test_parsers_never_raise(data):
    wire.parse_query(data)
    wire.formerr(data)


def _query_shaped():
    """Random mutations of a real query: the interesting garbage is near-valid."""
    good = _good()
    return st.tuples(st.integers(0, len(good) - 1), st.binary(min_size=1, max_size=8),
                     st.integers(0, len(good))).map(lambda t: (good[:t[0]] + t[1] + good[t[0] + len(t[1]):])[:t[2] or None])


@given(st.one_of(st.binary(max_size=300), _query_shaped()))
@settings(max_examples=600, deadline=None)
def test_resolver_answers_or_drops_anything(data):
    srv = _fuzz_server()
    out = srv.lt.call(_answer, srv, data)
    if out is not None:
        assert isinstance(out, bytes) and len(out) >= 12
        assert out[:2] == data[:2]


def _answer(srv, data):
    out = srv.resolver.answer(data, "udp")
    if out is not None and not isinstance(out, bytes):
        return out  # an awaitable (forwarding): LoopThread.call awaits it
    return out


_FUZZ: list[ZoneServer] = []


def _fuzz_server() -> ZoneServer:
    if not _FUZZ:
        s = ZoneServer(ClusterZone("cluster.local", ttl=5))
        s.change(s.zone.set_service, "default", "redis",
                 ServiceInfo("default", "redis", ("10.97.97.97",), ports=(PortInfo("redis", "TCP", 6379),)))
        _FUZZ.append(s)
    return _FUZZ[0]


@pytest.fixture(scope="module", autouse=True)
def _stop_fuzz_server():
    yield
    for s in _FUZZ:
        s.stop()


def test_malformed_packets_over_the_wire_then_a_good_query(srv):
    good = _good()
    hdr = good[:12]
    cases = {
        "empty": b"",
        "short header": good[:7],
        "header only": hdr,
        "truncated question": good[:20],
        "label past the end": hdr + b"\x3fabc",
        "compression loop": hdr[:4] + b"\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x0c\x00\x01\x00\x01",
        "pointer forward": hdr[:4] + b"\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x40\x00\x01\x00\x01",
        "qdcount 5": hdr[:4] + b"\x00\x05" + hdr[6:] + good[12:],
        "oversized": good + os.urandom(3000),
        "a response": bytes([good[0], good[1], good[2] | 0x80]) + good[3:],
        "bad opt": good[:-11] + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\xff\xff",
        "random": os.urandom(100),
    }
    for name, payload in cases.items():
        out = _send(srv, payload, wait=0.15)
        if out is not None:
            assert out[:2] == payload[:2], name
            rcode = out[3] & 0x0F
            assert rcode in (dns.rcode.FORMERR, dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED,
                             dns.rcode.NOTIMP, dns.rcode.SERVFAIL), name
        if name in ("compression loop", "pointer forward", "truncated question", "label past the end"):
            assert out is not None and out[3] & 0x0F == dns.rcode.FORMERR, name
        if name in ("a response", "empty", "short header"):
            assert out is None, name
    for _ in range(300):
        _send(srv, os.urandom(os.urandom(1)[0] + 12), wait=0)
    assert rrset_texts(query(srv, "redis.default.svc.cluster.local.")) == \
        ["redis.default.svc.cluster.local. 5 IN A 10.97.97.97"]


def test_tcp_garbage_then_a_good_query(srv):
    with socket.create_connection((srv.host, srv.port), timeout=2) as c:
        c.sendall(struct.pack("!H", 5) + b"\x01\x02\x03\x04\x05")  # not even a header: hang up
        c.settimeout(2)
        assert c.recv(100) == b""
    with socket.create_connection((srv.host, srv.port), timeout=2) as c:
        bad = _good()[:20]
        c.sendall(struct.pack("!H", len(bad)) + bad)
        n = struct.unpack("!H", c.recv(2))[0]
        assert c.recv(n)[3] & 0x0F == dns.rcode.FORMERR
        good = _good()
        c.sendall(struct.pack("!H", len(good)) + good)  # the same connection still works
        n = struct.unpack("!H", c.recv(2))[0]
        r = dns.message.from_wire(c.recv(n))
        assert r.answer[0][0].address == "10.97.97.97"


def test_edns_version_1_gets_badvers(srv):
    q = dns.message.make_query("redis.default.svc.cluster.local.", "A", use_edns=1)
    out = _send(srv, q.to_wire())
    r = dns.message.from_wire(out)
    assert r.rcode() == dns.rcode.BADVERS
