"""The DNS server: UDP and TCP on one address, a cache-hit fast path and a dnspython slow path.

``Resolver`` decides every answer. A query of the ordinary shape whose answer is
in the ``AnswerCache`` is answered by splicing (``wire.splice``) without dnspython;
everything else is parsed by dnspython: cluster names are answered from the
``ClusterZone`` (and the rendered answer is cached for the next asker), reverse
names of cluster IPs get PTRs, other names go to the ``Forwarder``. Packets that
cannot be parsed get FORMERR when they carry a query header and are dropped
otherwise; nothing a client sends can stop the server.

``UDPServer`` does not use an asyncio transport: it registers the socket with the
loop and, when readable, drains up to a batch of datagrams with plain
recvfrom/sendto, answering cache hits inline. That halves the per-query overhead
compared with a DatagramProtocol (one callback per batch, no transport layers).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from typing import Awaitable, Callable

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from kubesvc.dns import wire
from kubesvc.dns.answercache import AnswerCache
from kubesvc.dns.forward import Forwarder
from kubesvc.dns.metrics import Metrics
from kubesvc.dns.records import ClusterZone, Result, is_reverse

log = logging.getLogger(__name__)

Reply = bytes | None | Awaitable[bytes | None]

_NO_CACHE_TYPES = {dns.rdatatype.AXFR, dns.rdatatype.IXFR}


class Resolver:
    """Turns query bytes into response bytes (or None: drop)."""

    def __init__(self, zone: ClusterZone, cache: AnswerCache, forwarder: Forwarder, metrics: Metrics,
                 synced: Callable[[], bool] = lambda: True):
        self.zone = zone
        self.cache = cache
        self.forwarder = forwarder
        self.metrics = metrics
        self.synced = synced

    # ------------------------------------------------------------------ entry points
    def fast(self, data: bytes) -> bytes | None:
        """A cache hit answered without dnspython, or None (take ``answer``)."""
        q = wire.parse_query(data)
        if q is None:
            return None
        e = self.cache.entries.get(q.key)
        if e is None:
            return None
        e.hits += 1
        if e.size > q.udp_limit:
            return wire.truncated(data, q.qend, e)
        return wire.splice(data, q, e, e.next_tail())

    def answer(self, data: bytes, proto: str, family: str = "1") -> Reply:
        """Any query over ``proto`` ("udp" | "tcp"); may return an awaitable when forwarding."""
        t0 = time.perf_counter()
        limit = 65535
        q = wire.parse_query(data)
        if q is not None:
            if proto == "udp":
                limit = q.udp_limit
            e = self.cache.entries.get(q.key)
            if e is not None:
                qtype = e.qtype
                self.metrics.request(proto, family, qtype)
                self.metrics.cache_hit("denial" if e.negative else "success")
                self.metrics.response(e.rcode, qtype, time.perf_counter() - t0)
                if e.size > limit:
                    return wire.truncated(data, q.qend, e)
                return wire.splice(data, q, e, e.next_tail())
        try:
            msg = dns.message.from_wire(data, ignore_trailing=False)
        except dns.message.BadEDNS:
            return self._badvers(data)
        except Exception:  # anything dnspython cannot parse: FORMERR if there is a query to answer
            self.metrics.response(dns.rcode.FORMERR, 0, time.perf_counter() - t0)
            return wire.formerr(data)
        if msg.flags & dns.flags.QR:
            return None  # never answer a response (reflection loops)
        if proto == "udp" and q is None:
            limit = (max(wire.CLASSIC_UDP, min(msg.payload, wire.EDNS_PAYLOAD)) if msg.edns >= 0
                     else wire.CLASSIC_UDP)
        qtype = msg.question[0].rdtype if msg.question else 0
        self.metrics.request(proto, family, qtype)
        reply = self._answer_msg(msg, data, q, limit, t0)
        return reply

    # ------------------------------------------------------------------ slow path
    def _finish(self, resp: dns.message.Message, limit: int, qtype: int, t0: float) -> bytes:
        self.metrics.response(resp.rcode(), qtype, time.perf_counter() - t0)
        try:
            return resp.to_wire(max_size=limit)
        except dns.exception.TooBig:
            resp.answer, resp.authority, resp.additional = [], [], []
            resp.flags |= dns.flags.TC
            return resp.to_wire()

    def _error(self, msg: dns.message.Message, rcode: int, limit: int, t0: float) -> bytes:
        resp = dns.message.make_response(msg, our_payload=wire.EDNS_PAYLOAD)
        resp.set_rcode(rcode)
        qtype = msg.question[0].rdtype if msg.question else 0
        return self._finish(resp, limit, qtype, t0)

    def _badvers(self, data: bytes) -> bytes | None:
        # dnspython refuses EDNS versions other than 0 while parsing; answer BADVERS by hand.
        f = wire.formerr(data)
        if f is None:
            return None
        opt = b"\x00\x00\x29" + struct.pack("!H", wire.EDNS_PAYLOAD) + bytes([dns.rcode.BADVERS >> 4, 0, 0, 0]) + b"\x00\x00"
        return f[:11] + b"\x01" + opt

    def _answer_msg(self, msg: dns.message.Message, data: bytes, q: wire.Question | None, limit: int,
                    t0: float) -> Reply:
        if msg.edns > 0:
            return self._error(msg, dns.rcode.BADVERS, limit, t0)  # RFC 6891 6.1.3
        if msg.opcode() != dns.opcode.QUERY:
            return self._error(msg, dns.rcode.NOTIMP, limit, t0)
        if len(msg.question) != 1:
            return self._error(msg, dns.rcode.FORMERR, limit, t0)
        qrr = msg.question[0]
        qname, qtype, qclass = qrr.name, qrr.rdtype, qrr.rdclass
        low = qname.canonicalize()
        if qtype in _NO_CACHE_TYPES:
            return self._error(msg, dns.rcode.REFUSED, limit, t0)  # zone transfers are not offered
        if self.zone.in_zone(low):
            if qclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
                return self._error(msg, dns.rcode.REFUSED, limit, t0)
            if not self.synced():
                # As CoreDNS: until the API caches have synced, cluster names fail rather than lie.
                return self._error(msg, dns.rcode.SERVFAIL, limit, t0)
            self.metrics.cache_miss()
            return self._zone_answer(msg, data, q, low, qtype, self.zone.resolve(low, qtype), limit, t0)
        if qtype == dns.rdatatype.PTR and is_reverse(low) and self.synced():
            r = self.zone.reverse(low)
            if r is not None:
                self.metrics.cache_miss()
                return self._zone_answer(msg, data, q, low, qtype, r, limit, t0)
        if self.forwarder.is_loop_probe(low):
            return self._error(msg, dns.rcode.SERVFAIL, limit, t0)
        return self._forward(msg, limit, t0)

    def _render(self, msg: dns.message.Message, name: dns.name.Name, qtype: int, r: Result,
                edns: bool) -> dns.message.Message:
        resp = dns.message.Message(id=msg.id)
        resp.flags = dns.flags.QR | dns.flags.AA | (msg.flags & dns.flags.RD)
        resp.question = [dns.rrset.RRset(name, msg.question[0].rdclass, qtype)]
        resp.answer = list(r.answer)
        resp.additional = list(r.additional)
        resp.set_rcode(r.rcode)
        if r.negative:
            resp.authority = [self.zone.soa()]
        if edns:
            resp.use_edns(0, 0, wire.EDNS_PAYLOAD)
        return resp

    def _zone_answer(self, msg: dns.message.Message, data: bytes, q: wire.Question | None,
                     low: dns.name.Name, qtype: int, r: Result, limit: int, t0: float) -> Reply:
        edns = msg.edns >= 0
        if r.chase is not None:
            return self._chase(msg, qtype, r, limit, t0)
        if q is None:
            # An unusual query shape: answer it, but do not cache (the key would not match).
            return self._finish(self._render(msg, msg.question[0].name, qtype, r, edns), limit, qtype, t0)
        p = wire.prebuild(self._render(msg, low, qtype, r, edns), shuffle=False)
        self.cache.put(q.key, p, r.deps, r.negative, self._rotations(msg, low, qtype, r, edns))
        self.metrics.response(p.rcode, qtype, time.perf_counter() - t0)
        if p.size > limit:
            return wire.truncated(data, q.qend, p)
        return wire.splice(data, q, p)

    def _rotations(self, msg: dns.message.Message, low: dns.name.Name, qtype: int, r: Result,
                   edns: bool) -> tuple[bytes, ...] | None:
        """Up to 4 rotations of the first multi-address RRset, or None when there is nothing to rotate."""
        idx = next((i for i, rr in enumerate(r.answer)
                    if rr.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) and len(rr) > 1), None)
        if idx is None:
            return None
        rr = r.answer[idx]
        items = list(rr)
        tails = []
        for k in range(min(len(items), 4)):
            rot = dns.rrset.RRset(rr.name, rr.rdclass, rr.rdtype)
            rot.update_ttl(rr.ttl)
            for rd in items[k:] + items[:k]:
                rot.add(rd)
            rotated = Result(r.rcode, r.answer[:idx] + [rot] + r.answer[idx + 1:], r.additional, r.deps)
            tails.append(wire.prebuild(self._render(msg, low, qtype, rotated, edns), shuffle=False).tail)
        return tuple(tails)

    async def _chase(self, msg: dns.message.Message, qtype: int, r: Result, limit: int, t0: float) -> bytes:
        """An ExternalName whose target is outside the zone: CNAME + the upstream's answer."""
        sub = dns.message.make_query(r.chase, qtype)
        up = await self.forwarder.resolve(sub)
        if up is not None:
            r.answer.extend(up.answer)
            if up.rcode() == dns.rcode.NXDOMAIN:
                r.rcode = dns.rcode.NXDOMAIN
        resp = self._render(msg, msg.question[0].name, qtype, r, msg.edns >= 0)
        if r.negative and up is not None and up.authority:
            resp.authority = list(up.authority)
        return self._finish(resp, limit, qtype, t0)

    async def _forward(self, msg: dns.message.Message, limit: int, t0: float) -> bytes:
        qtype = msg.question[0].rdtype
        up = await self.forwarder.resolve(msg)
        resp = dns.message.Message(id=msg.id)
        resp.question = list(msg.question)
        if up is None:
            resp.flags = dns.flags.QR | (msg.flags & dns.flags.RD) | dns.flags.RA
            resp.set_rcode(dns.rcode.SERVFAIL)
        else:
            resp.flags = (up.flags & ~(dns.flags.RD | dns.flags.TC)) | dns.flags.QR | (msg.flags & dns.flags.RD)
            resp.set_rcode(up.rcode())
            resp.answer, resp.authority, resp.additional = list(up.answer), list(up.authority), list(up.additional)
        if msg.edns >= 0:
            resp.use_edns(0, 0, wire.EDNS_PAYLOAD)
        return self._finish(resp, limit, qtype, t0)


class UDPAnswering:
    """What both UDP servers share: the socket's lifecycle, and the slow path through
    ``Resolver.answer`` (forwarding, misses) for queries the fast path did not answer."""

    def __init__(self, resolver: Resolver, sock: socket.socket):
        self.resolver = resolver
        self.sock = sock
        self.family = "2" if sock.family == socket.AF_INET6 else "1"
        self._tasks: set[asyncio.Task] = set()

    def start(self) -> None:
        self.sock.setblocking(False)
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        try:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        except Exception:
            pass
        for t in self._tasks:
            t.cancel()
        self.sock.close()

    def _readable(self) -> None:
        raise NotImplementedError

    def _slow(self, data: bytes, addr) -> None:
        try:
            out = self.resolver.answer(data, "udp", self.family)
        except Exception:
            log.exception("answering a %d-byte packet failed", len(data))
            out = wire.servfail(data)
        if out is None:
            return
        if isinstance(out, bytes):
            self._send(out, addr)
            return
        task = asyncio.ensure_future(self._later(out, data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _later(self, aw, data: bytes, addr) -> None:
        try:
            out = await aw
        except Exception:
            log.exception("answering a query failed")
            out = wire.servfail(data)
        if out is not None:
            self._send(out, addr)

    def _send(self, out: bytes, addr) -> None:
        try:
            self.sock.sendto(out, addr)
        except OSError:
            pass  # socket buffer full or peer gone: UDP may drop


class UDPServer(UDPAnswering):
    """UDP on one socket: cache hits answered inline in batches, the rest via ``Resolver.answer``."""

    BATCH = 64

    def _readable(self) -> None:
        recv, send, fast = self.sock.recvfrom, self.sock.sendto, self.resolver.fast
        hits = 0
        t0 = time.perf_counter()
        for _ in range(self.BATCH):
            try:
                data, addr = recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue  # e.g. an ICMP error queued on the socket
            try:
                out = fast(data)
                if out is None:
                    self._slow(data, addr)
                    continue
            except Exception:  # belt and braces: a bad packet must never stop the loop
                log.exception("fast path failed on a %d-byte packet", len(data))
                continue
            hits += 1
            try:
                send(out, addr)
            except OSError:
                pass  # socket buffer full or peer gone: UDP may drop
        if hits:
            self.resolver.metrics.fast_batch(time.perf_counter() - t0, hits)


class TCPServer:
    """DNS over TCP (RFC 7766): length-prefixed messages, several per connection, idle timeout."""

    IDLE = 10.0

    def __init__(self, resolver: Resolver, sock: socket.socket):
        self.resolver = resolver
        self.sock = sock
        self.family = "2" if sock.family == socket.AF_INET6 else "1"
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._conn, sock=self.sock)

    async def close(self) -> None:
        if self.server:
            self.server.close()

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    hdr = await asyncio.wait_for(reader.readexactly(2), self.IDLE)
                    n = struct.unpack("!H", hdr)[0]
                    data = await asyncio.wait_for(reader.readexactly(n), self.IDLE)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
                    return
                try:
                    out = self.resolver.answer(data, "tcp", self.family)
                    if out is not None and not isinstance(out, bytes):
                        out = await out
                except Exception:
                    log.exception("answering a TCP query failed")
                    out = wire.servfail(data)
                if out is None:
                    if len(data) < 12:
                        return  # not even a header: the stream is garbage, hang up
                    continue
                writer.write(struct.pack("!H", len(out)) + out)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


def bind_sockets(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """UDP and TCP sockets on the same address and port (port 0: the same free port for both)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(20):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        except OSError:
            pass
        udp.bind((host, port))
        bound = udp.getsockname()[1]
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind((host, bound))
        except OSError:
            udp.close()
            tcp.close()
            if port:
                raise
            continue
        tcp.listen(1024)
        tcp.setblocking(False)
        return udp, tcp
    raise OSError(f"no free port on {host} for both UDP and TCP")


def udp_server(resolver: Resolver, sock: socket.socket):
    """The batching (recvmmsg/sendmmsg) UDP server where the platform has it, else the portable one."""
    from kubesvc.dns import udpbatch
    if udpbatch.available():
        return udpbatch.BatchUDPServer(resolver, sock)
    return UDPServer(resolver, sock)
