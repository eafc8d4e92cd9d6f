"""Test helpers for kubesvc dns: an in-process server on loopback fed directly (no API),
a tiny upstream DNS server, and query helpers for dnspython and the real dig.

The in-process server runs the real sockets and resolver on its own event loop in
a thread, so `dig` (a subprocess) and dnspython can query it while the test
changes its zone.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
from typing import Callable

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset

from kubesvc.dns.answercache import AnswerCache
from kubesvc.dns.forward import Forwarder
from kubesvc.dns.metrics import Metrics
from kubesvc.dns.records import ClusterZone
from kubesvc.dns.server import Resolver, TCPServer, UDPServer, bind_sockets, udp_server


class LoopThread:
    """An asyncio loop in a daemon thread; ``call`` runs a function or coroutine on it and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, fn: Callable, *args, timeout: float = 10):
        async def run():
            out = fn(*args)
            if asyncio.iscoroutine(out):
                out = await out
            return out
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class ZoneServer:
    """A kubesvc DNS server (UDP+TCP on 127.0.0.1:free port) whose zone the test edits directly."""

    def __init__(self, zone: ClusterZone | None = None, upstreams: list[tuple[str, int]] = (),
                 host: str = "127.0.0.1", batch: bool = True):
        self.lt = LoopThread()
        self.zone = zone or ClusterZone("cluster.local", ttl=30)
        self.cache = AnswerCache()
        self.metrics = Metrics("dns://test", "cluster.local.")
        self.metrics.answer_cache = self.cache
        self.forwarder = Forwarder(list(upstreams), timeout=1.0, metrics=self.metrics)
        self.resolver = Resolver(self.zone, self.cache, self.forwarder, self.metrics)
        udp, tcp = bind_sockets(host, 0)
        self.host, self.port = host, udp.getsockname()[1]
        self.udp = udp_server(self.resolver, udp) if batch else UDPServer(self.resolver, udp)
        self.tcp = TCPServer(self.resolver, tcp)
        self.lt.call(self.udp.start)
        self.lt.call(self.tcp.start)

    def change(self, fn: Callable, *args):
        """Apply a zone change on the server's loop and invalidate what it touched, as the feeder does."""
        def apply():
            deps = fn(*args)
            self.cache.invalidate(deps)
            return deps
        return self.lt.call(apply)

    def stop(self) -> None:
        self.lt.call(self.udp.close)
        self.lt.call(self.tcp.close)
        self.lt.call(self.forwarder.close)
        self.lt.stop()


def query(server, name: str, rdtype: str = "A", tcp: bool = False, edns: bool = True,
          payload: int = 1232, timeout: float = 2.0) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else False, payload=payload)
    # RD is set by make_query, as dig does. UDP is retried like a stub resolver would:
    # on a shared, loaded machine a datagram or a time slice can go missing.
    for attempt in range(3):
        try:
            if tcp:
                return dns.query.tcp(q, server.host, port=server.port, timeout=timeout)
            return dns.query.udp(q, server.host, port=server.port, timeout=timeout)
        except dns.exception.Timeout:
            if attempt == 2:
                raise


def dig(server, *args: str) -> str:
    """The real dig against the server; returns its full output."""
    p = subprocess.run(["dig", "-p", str(server.port), f"@{server.host}", *args, "+time=2", "+tries=1"],
                       capture_output=True, text=True, timeout=20)
    return p.stdout


def rrset_texts(msg: dns.message.Message, section: str = "answer") -> list[str]:
    out = []
    for rrset in getattr(msg, section):
        for line in rrset.to_text().splitlines():
            out.append(line)
    return out


class FakeUpstream:
    """A tiny authoritative upstream on loopback: answers from a dict, counts queries, can go silent."""

    def __init__(self, records: dict[tuple[str, str], list[str]], ttl: int = 2, host: str = "127.0.0.1"):
        self.records = {(n.lower().rstrip(".") + ".", t): v for (n, t), v in records.items()}
        self.ttl = ttl
        self.queries = 0
        self.silent = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def _run(self) -> None:
        while self.running:
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            if self.silent:
                continue
            try:
                q = dns.message.from_wire(data)
            except Exception:
                continue
            self.queries += 1
            r = dns.message.make_response(q)
            r.flags |= dns.flags.RA
            qq = q.question[0]
            key = (qq.name.to_text().lower(), dns.rdatatype.to_text(qq.rdtype))
            values = self.records.get(key)
            if values:
                r.answer.append(dns.rrset.from_text_list(qq.name, self.ttl, "IN", qq.rdtype, values))
            elif qq.rdtype == dns.rdatatype.NS and qq.name == dns.name.root:
                r.answer.append(dns.rrset.from_text_list(qq.name, self.ttl, "IN", "NS", ["a.root."]))
            elif not any(n == key[0] for n, _ in self.records):
                r.set_rcode(dns.rcode.NXDOMAIN)
                r.authority.append(dns.rrset.from_text(".", self.ttl, "IN", "SOA",
                                                       f"a.root. nstld. 1 1800 900 604800 {self.ttl}"))
            try:
                self.sock.sendto(r.to_wire(), peer)
            except OSError:
                pass

    def stop(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()


import dns.flags  # noqa: E402
import dns.name  # noqa: E402
