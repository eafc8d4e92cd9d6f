"""Forwarding names outside the cluster zone: upstreams, health checks, failover, a cache.

What CoreDNS's ``forward`` + ``cache 30`` plugins do for the Corefile Kubernetes
ships: queries go to a healthy upstream (random among the healthy ones, like
forward's default policy); an upstream that times out or refuses is marked down
and probed with ``. IN NS`` every 0.5 s until it answers again; when all are down
every upstream is still tried. Answers, negative ones included, are cached for
their TTL (for negative answers the SOA minimum) capped at 30 s, with TTLs
counting down in what is served. A truncated UDP answer is retried over TCP.
Loop detection (the upstream must not be this server): at start a random
``<n>.<n>.zone-loop-check.`` HINFO query is sent through each upstream; if it
comes back to this server, that upstream is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

log = logging.getLogger(__name__)

MAX_CACHE_TTL = 30
HEALTH_INTERVAL = 0.5


def parse_upstream(text: str) -> tuple[str, int]:
    """ADDR[:PORT] or [V6ADDR]:PORT -> (addr, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return host.rstrip("]"), int(port or 53)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, 53


def resolv_conf_upstreams(path: str = "/etc/resolv.conf") -> list[str]:
    """The nameservers of resolv.conf (what `forward . /etc/resolv.conf` uses)."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    out.append(parts[1])
    except OSError:
        pass
    return out


class _Exchange(asyncio.DatagramProtocol):
    """One UDP question and its answer (the reply must come from the upstream and carry our ID)."""

    def __init__(self, qid: bytes):
        self.qid = qid
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        if data[:2] == self.qid and not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)


async def udp_exchange(wire: bytes, host: str, port: int, timeout: float) -> bytes:
    """Send one query over UDP and return the reply bytes.

    Written here rather than taken from dns.asyncquery, which pulls in trio, h2 and
    httpcore (~10 MB resident) for transports the forwarder never uses.
    """
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(lambda: _Exchange(wire[:2]),
                                                           remote_addr=(host, port))
    try:
        transport.sendto(wire)
        return await asyncio.wait_for(proto.done, timeout)
    finally:
        transport.close()


async def tcp_exchange(wire: bytes, host: str, port: int, timeout: float) -> bytes:
    """Send one query over TCP (2-byte length prefix) and return the reply bytes."""
    async def run() -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(len(wire).to_bytes(2, "big") + wire)
            await writer.drain()
            n = int.from_bytes(await reader.readexactly(2), "big")
            return await reader.readexactly(n)
        finally:
            writer.close()
    return await asyncio.wait_for(run(), timeout)


async def exchange(q: dns.message.Message, host: str, port: int, timeout: float) -> dns.message.Message:
    """UDP, and TCP again when the UDP answer came back truncated."""
    wire = q.to_wire()
    try:
        resp = dns.message.from_wire(await udp_exchange(wire, host, port, timeout))
    except asyncio.TimeoutError:
        raise dns.exception.Timeout from None
    if resp.flags & dns.flags.TC:
        try:
            resp = dns.message.from_wire(await tcp_exchange(wire, host, port, timeout))
        except asyncio.TimeoutError:
            raise dns.exception.Timeout from None
    return resp


@dataclass
class Upstream:
    """One upstream server and its health."""

    addr: str
    port: int = 53
    healthy: bool = True
    fails: int = 0
    checker: asyncio.Task | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.addr}:{self.port}"


class Forwarder:
    """Resolves queries through the upstreams, with a TTL-capped response cache."""

    def __init__(self, upstreams: list[tuple[str, int]], timeout: float = 2.0, metrics=None):
        self.upstreams = [Upstream(a, p) for a, p in upstreams]
        self.timeout = timeout
        self.metrics = metrics
        # (lowercased qname, qtype, qclass, DO) -> (response, stored at, expires at)
        self.cache: dict[tuple, tuple[dns.message.Message, float, float]] = {}
        self.max_entries = 10_000
        self.loop_probes: dict[dns.name.Name, int] = {}

    # ------------------------------------------------------------------ cache
    def _key(self, q: dns.message.Message) -> tuple:
        rr = q.question[0]
        return (rr.name.canonicalize(), rr.rdtype, rr.rdclass)

    def cached(self, q: dns.message.Message) -> dns.message.Message | None:
        key = self._key(q)
        hit = self.cache.get(key)
        if hit is None:
            return None
        msg, stored, expires = hit
        now = time.monotonic()
        if now >= expires:
            del self.cache[key]
            return None
        age = int(now - stored)
        out = dns.message.from_wire(msg.to_wire())
        for section in (out.answer, out.authority, out.additional):
            for rrset in section:
                rrset.ttl = max(0, rrset.ttl - age)
        return out

    def _store(self, q: dns.message.Message, resp: dns.message.Message) -> None:
        if resp.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) or resp.flags & dns.flags.TC:
            return
        if resp.answer:
            ttl = min(rr.ttl for rr in resp.answer)
        else:
            soa = [rr for rr in resp.authority if rr.rdtype == dns.rdatatype.SOA]
            ttl = min(soa[0].ttl, soa[0][0].minimum) if soa else 5
        ttl = min(ttl, MAX_CACHE_TTL)
        if ttl <= 0:
            return
        if len(self.cache) >= self.max_entries:
            self.cache.clear()
        now = time.monotonic()
        self.cache[self._key(q)] = (resp, now, now + ttl)

    def drop(self, qname: dns.name.Name) -> None:
        """Forget cached answers for one name (e.g. a PTR the cluster now answers)."""
        low = qname.canonicalize()
        for key in [k for k in self.cache if k[0] == low]:
            del self.cache[key]

    # ------------------------------------------------------------------ queries
    def _order(self) -> list[Upstream]:
        healthy = [u for u in self.upstreams if u.healthy]
        random.shuffle(healthy)
        if healthy:
            return healthy
        # All down: CoreDNS then tries them anyway rather than failing outright.
        rest = list(self.upstreams)
        random.shuffle(rest)
        return rest

    async def _ask(self, u: Upstream, q: dns.message.Message) -> dns.message.Message:
        return await exchange(q, u.addr, u.port, self.timeout)

    async def resolve(self, query: dns.message.Message, use_cache: bool = True) -> dns.message.Message | None:
        """The upstream's answer to ``query`` (ID and flags as the upstream sent), or None if none answered."""
        if use_cache:
            hit = self.cached(query)
            if hit is not None:
                if self.metrics:
                    self.metrics.cache_hit("success" if hit.answer else "denial")
                return hit
            if self.metrics:
                self.metrics.cache_miss()
        if not self.upstreams:
            return None
        q = dns.message.Message(id=random.getrandbits(16))
        q.flags = dns.flags.RD | (query.flags & dns.flags.CD)
        q.question = list(query.question)
        q.use_edns(0, 0, 1232)
        for u in self._order():
            if self.metrics:
                self.metrics.forward_request(u.label)
            try:
                resp = await self._ask(u, q)
            except (dns.exception.DNSException, OSError, EOFError, asyncio.IncompleteReadError) as err:
                log.info("upstream %s failed: %s", u.label, err or type(err).__name__)
                self._mark_down(u)
                continue
            if resp.rcode() == dns.rcode.REFUSED or resp.rcode() == dns.rcode.SERVFAIL:
                # CoreDNS forward moves on to the next upstream on these.
                self._mark_down(u)
                if self.metrics:
                    self.metrics.forward_response(u.label, resp.rcode())
                continue
            if self.metrics:
                self.metrics.forward_response(u.label, resp.rcode())
            u.fails = 0
            self._store(q, resp)
            return resp
        return None

    def _mark_down(self, u: Upstream) -> None:
        u.fails += 1
        if u.healthy:
            u.healthy = False
            log.warning("upstream %s marked down", u.label)
        if u.checker is None or u.checker.done():
            u.checker = asyncio.get_running_loop().create_task(self._health_check(u))

    async def _health_check(self, u: Upstream) -> None:
        probe = dns.message.make_query(".", dns.rdatatype.NS)
        while not u.healthy:
            await asyncio.sleep(HEALTH_INTERVAL)
            try:
                await exchange(probe, u.addr, u.port, 1.0)
            except (dns.exception.DNSException, OSError, EOFError):
                if self.metrics:
                    self.metrics.healthcheck_failure(u.label)
                continue
            u.healthy, u.fails = True, 0
            log.info("upstream %s is back", u.label)

    # ------------------------------------------------------------------ loop detection
    async def detect_loops(self, zone: dns.name.Name) -> None:
        """Send a random probe through each upstream; those it comes back through are loops."""
        for u in list(self.upstreams):
            name = dns.name.from_text(f"{secrets.randbelow(10**12)}.{secrets.randbelow(10**12)}.zone-loop-check.")
            self.loop_probes[name] = 0
            q = dns.message.make_query(name, dns.rdatatype.HINFO)
            try:
                await exchange(q, u.addr, u.port, 1.0)
            except (dns.exception.DNSException, OSError, EOFError, asyncio.IncompleteReadError):
                pass
            if self.loop_probes.pop(name, 0) > 0:
                log.error("loop detected: upstream %s forwards back to this server; not using it", u.label)
                self.upstreams.remove(u)

    def is_loop_probe(self, qname: dns.name.Name) -> bool:
        """Called by the server for every forwarded name: counts probes that came back."""
        if qname in self.loop_probes:
            self.loop_probes[qname] += 1
            return True
        return False

    async def close(self) -> None:
        for u in self.upstreams:
            if u.checker:
                u.checker.cancel()
