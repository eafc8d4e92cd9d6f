"""TCP and UDP relays for the userspace data plane: asyncio protocols, no thread per connection.

A :class:`Balancer` picks the endpoint for a new connection (round robin, or
ClientIP affinity with a timeout). :class:`TcpRelay` is the server protocol for
one accepted client; it opens the upstream connection and then the two sides
pass bytes straight through (the bytes object a read produced is what the other
transport writes: no copies), with back-pressure both ways (pause reading one
side while the other's write buffer is full) and half-close passed on.

Half-close and uvloop: uvloop 0.21–0.23 was seen to abort ("double free or
corruption") when a relay called ``transport.write_eof()`` under heavy
connection-close load. So EOF is passed on only once the peer's write buffer is
empty (the same order the kernel would keep), never twice, never on a closing
transport, and a full close of both sides replaces write_eof when the other side
has already finished sending. tests/integration/proxy hammers this path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Optional

log = logging.getLogger(__name__)

Addr = tuple[str, int]


class Balancer:
    """Endpoint choice for one service port: round robin, optional ClientIP affinity."""

    def __init__(self, endpoints: list[Addr] | None = None, affinity_timeout: int = 0):
        self.endpoints: list[Addr] = list(endpoints or [])
        self.affinity_timeout = affinity_timeout
        self._next = 0
        self._affinity: dict[str, tuple[Addr, float]] = {}

    def update(self, endpoints: list[Addr], affinity_timeout: int) -> None:
        if endpoints != self.endpoints or affinity_timeout != self.affinity_timeout:
            alive = set(endpoints)
            # keep pins to endpoints that still exist (as kube-proxy's userspace balancer did)
            self._affinity = {c: v for c, v in self._affinity.items() if v[0] in alive} if affinity_timeout else {}
            self.endpoints = list(endpoints)
            self.affinity_timeout = affinity_timeout

    def pick(self, client_ip: str, skip: set[Addr] | None = None) -> Optional[Addr]:
        eps = [e for e in self.endpoints if e not in skip] if skip else self.endpoints
        if not eps:
            return None
        now = time.monotonic()
        if self.affinity_timeout:
            pinned = self._affinity.get(client_ip)
            if pinned and pinned[0] in eps and now - pinned[1] < self.affinity_timeout:
                self._affinity[client_ip] = (pinned[0], now)
                return pinned[0]
        ep = eps[self._next % len(eps)]
        self._next += 1
        if self.affinity_timeout:
            self._affinity[client_ip] = (ep, now)
        return ep


class _Side(asyncio.Protocol):
    """One socket of a relayed connection; `peer` is the other side."""

    __slots__ = ("transport", "peer", "eof_in", "eof_out", "closed", "paused_peer", "eof_pending", "early",
                 "early_size", "early_paused", "eof_retries")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Optional["_Side"] = None
        self.eof_in = False        # this side sent us EOF
        self.eof_out = False       # we passed an EOF to this side
        self.closed = False
        self.paused_peer = False   # we paused the peer's reading because our buffer is full
        self.eof_pending = False   # an EOF to pass to this side once its buffer drains
        self.early: list[bytes] = []
        self.early_size = 0
        self.early_paused = False
        self.eof_retries = 0

    # data from this side goes to the peer
    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.closed:
            peer.transport.write(data)
        elif peer is None:
            # bytes that arrived before the upstream connection was up; reading is not
            # paused up front (two epoll_ctl calls per connection) unless they pile up
            self.early.append(data)
            self.early_size += len(data)
            if self.early_size > 262144 and self.transport is not None:
                self.transport.pause_reading()
                self.early_paused = True

    def eof_received(self) -> bool:
        self.eof_in = True
        peer = self.peer
        if peer is None:
            return True  # passed on once the upstream is connected
        if peer.closed:
            return False
        if peer.eof_in:
            # both directions finished: close both (no write_eof needed)
            peer.close_soon()
            return False
        peer.pass_eof()
        return True  # keep our transport open for the other direction

    def pass_eof(self) -> None:
        """Shut our write side once our buffer is empty (see the module docstring)."""
        t = self.transport
        if self.eof_out or self.closed or t is None or t.is_closing():
            return
        if t.get_write_buffer_size():
            # uvloop queues writes and flushes them at the end of the loop iteration:
            # look again on the next one; while the buffer is really backed up
            # (resume_writing fires only after a pause) keep looking every 5 ms.
            self.eof_pending = True
            loop = asyncio.get_running_loop()
            if self.eof_retries < 1:
                loop.call_soon(self._retry_eof)
            else:
                loop.call_later(0.005, self._retry_eof)
            self.eof_retries += 1
            return
        self.eof_out = True
        try:
            t.write_eof()
        except (OSError, RuntimeError):
            self.close_soon()

    def _retry_eof(self) -> None:
        if self.eof_pending:
            self.eof_pending = False
            self.pass_eof()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.closed:
            self.paused_peer = True
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.paused_peer and self.peer is not None and self.peer.transport is not None \
                and not self.peer.closed:
            self.paused_peer = False
            self.peer.transport.resume_reading()
        if self.eof_pending and not self.transport.get_write_buffer_size():
            self.eof_pending = False
            self.pass_eof()

    def close_soon(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()  # flushes what is buffered, then closes

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        peer = self.peer
        if peer is not None and not peer.closed and peer.transport is not None:
            if exc is None and not self.eof_in:
                # closed cleanly without EOF first: treat as EOF + close
                peer.close_soon()
            elif exc is not None:
                peer.closed = True
                peer.transport.abort()  # reset propagates as reset
            else:
                peer.close_soon()


class _Upstream(_Side):
    __slots__ = ()

    def __init__(self, client: "TcpRelay") -> None:
        super().__init__()
        self.peer = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called by the transport the moment the connect completed, before the
        # dialling coroutine resumes: the relay starts here (uvloop sets TCP_NODELAY).
        self.transport = transport  # type: ignore[assignment]
        client = self.peer
        assert isinstance(client, TcpRelay)
        if client.closed:
            self.closed = True
            transport.close()
            return
        client.peer = self
        if client.early:
            for data in client.early:
                transport.write(data)  # type: ignore[attr-defined]
            client.early.clear()
        if client.eof_in:
            self.pass_eof()
        if client.early_paused:
            client.early_paused = False
            client.transport.resume_reading()  # type: ignore[union-attr]


class ConnectDeadlines:
    """Upstream connect timeouts of one event loop, swept coarsely instead of a timer per connect.

    A timer per connection (call_later + cancel) cost a libuv timer start/stop and a
    handle each; instead every dialling relay is noted with the sweep tick by which it
    must be connected, and one timer, running only while something is dialling,
    cancels the laggards every TICK seconds (a timeout fires up to TICK late).
    """

    TICK = 0.25
    _by_loop: dict[asyncio.AbstractEventLoop, "ConnectDeadlines"] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.tick = 0
        self.dialing: dict["TcpRelay", int] = {}
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> "ConnectDeadlines":
        d = cls._by_loop.get(loop)
        if d is None:
            d = cls._by_loop[loop] = cls(loop)
        return d

    def add(self, relay: "TcpRelay", timeout: float) -> None:
        self.dialing[relay] = self.tick + 1 + int(timeout / self.TICK)
        if self._timer is None:
            self._timer = self.loop.call_later(self.TICK, self._sweep)

    def _sweep(self) -> None:
        self.tick += 1
        late = [r for r, due in self.dialing.items() if due <= self.tick]
        for relay in late:
            del self.dialing[relay]
            relay.dial_timed_out()
        if self.dialing:
            self._timer = self.loop.call_later(self.TICK, self._sweep)
        else:
            self._timer = None
            # nothing dialling: forget this loop (tests run many short-lived loops)
            if self._by_loop.get(self.loop) is self:
                del self._by_loop[self.loop]


class TcpRelay(_Side):
    """Server protocol for one client connection of one service port.

    The upstream connect starts inside connection_made, without a Task: the
    coroutine of ``loop.create_connection`` is stepped by hand (its first step
    issues the non-blocking connect; it is finished from the connect waiter's done
    callback). The relay itself starts in :class:`_Upstream`'s connection_made, so a
    new connection costs no extra event-loop turn. A refused or timed-out endpoint
    is replaced by the next one (round robin), as before.
    """

    __slots__ = ("balancer", "connect_timeout", "loop", "client_ip", "tried", "dial", "waiter", "ep")

    def __init__(self, balancer: Balancer, connect_timeout: float = 3.0,
                 loop: asyncio.AbstractEventLoop | None = None):
        super().__init__()
        self.balancer = balancer
        self.connect_timeout = connect_timeout
        # Pass the loop in: asyncio.get_running_loop() costs a getpid() syscall in 3.11.
        self.loop = loop
        self.client_ip = ""
        self.tried: set[Addr] | None = None
        self.dial = None      # the create_connection coroutine being stepped
        self.waiter: asyncio.Future | None = None
        self.ep: Addr = ("", 0)  # the endpoint being dialled

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        if self.balancer.affinity_timeout:  # the peer address costs a syscall: only when needed
            peername = transport.get_extra_info("peername")
            self.client_ip = peername[0] if peername else ""
        self._dial()

    def _make_upstream(self) -> _Upstream:
        return _Upstream(self)

    def _dial(self) -> None:
        """Start connecting to the next endpoint; reset the client when none is left."""
        loop = self.loop
        assert loop is not None
        while not self.closed:
            ep = self.balancer.pick(self.client_ip, self.tried)
            if ep is None:
                break
            self.ep = ep
            self.dial = loop.create_connection(self._make_upstream, ep[0], ep[1])
            if self._step():  # in flight (or connected at once)
                if self.dial is not None:
                    ConnectDeadlines.of(loop).add(self, self.connect_timeout)
                return
        # no endpoint answered: reset the client, as a refused connection would
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    def _step(self, _fut: object = None) -> bool:
        """Run the dialling coroutine up to its next wait; False when this endpoint failed.

        What a Task would do, minus the Task: the first step runs inside
        connection_made, later ones from the awaited future's done callback.
        """
        try:
            fut = self.dial.send(None)  # type: ignore[union-attr]
        except StopIteration:
            # connected: _Upstream.connection_made has started the relay already
            self._undial()
            return True
        except (OSError, asyncio.CancelledError) as err:
            # refused/unreachable (OSError) or our timeout (CancelledError)
            self._undial()
            if self.tried is None:
                self.tried = set()
            self.tried.add(self.ep)
            log.debug("endpoint %s:%s failed: %s", self.ep[0], self.ep[1],
                      "timeout" if isinstance(err, asyncio.CancelledError) else err)
            if _fut is not None:
                self._dial()  # called back: go on with the next endpoint ourselves
            return False
        self.waiter = fut
        fut.add_done_callback(self._step)
        return True

    def _undial(self) -> None:
        self.dial = self.waiter = None
        d = ConnectDeadlines._by_loop.get(self.loop)  # type: ignore[arg-type]
        if d is not None:
            d.dialing.pop(self, None)

    def dial_timed_out(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.cancel()
class UdpRelay(asyncio.DatagramProtocol):
    """One service port's UDP listener: a connected upstream socket per client address."""

    def __init__(self, balancer: Balancer, idle_timeout: float = 30.0):
        self.balancer = balancer
        self.idle_timeout = idle_timeout
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: dict[Addr, "_UdpSession"] = {}
        self._reaper: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._schedule_reap()

    def _schedule_reap(self) -> None:
        self._reaper = asyncio.get_running_loop().call_later(self.idle_timeout / 2, self._reap)

    def _reap(self) -> None:
        now = time.monotonic()
        for addr, s in list(self.sessions.items()):
            if now - s.last > self.idle_timeout:
                s.close()
                self.sessions.pop(addr, None)
        self._schedule_reap()

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        s = self.sessions.get(addr)
        if s is not None and s.endpoint not in self.balancer.endpoints:
            s.close()  # its endpoint went away: pick again (stale UDP flows must not black-hole)
            s = None
        if s is None:
            ep = self.balancer.pick(addr[0])
            if ep is None:
                return
            s = _UdpSession(self, addr, ep)
            self.sessions[addr] = s
            asyncio.get_running_loop().create_task(s.open())
        s.send(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._reaper:
            self._reaper.cancel()
        for s in self.sessions.values():
            s.close()
        self.sessions.clear()


class _UdpSession(asyncio.DatagramProtocol):
    def __init__(self, relay: UdpRelay, client: Addr, endpoint: Addr):
        self.relay, self.client, self.endpoint = relay, client, endpoint
        self.transport: asyncio.DatagramTransport | None = None
        self.queue: list[bytes] = []
        self.last = time.monotonic()
        self.closed = False

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_datagram_endpoint(lambda: self, remote_addr=self.endpoint)
        except OSError:
            self.closed = True
            self.relay.sessions.pop(self.client, None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.closed:
            transport.close()
            return
        for d in self.queue:
            self.transport.sendto(d)
        self.queue.clear()

    def send(self, data: bytes) -> None:
        self.last = time.monotonic()
        if self.transport is None:
            self.queue.append(data)
        else:
            self.transport.sendto(data)

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        self.last = time.monotonic()
        if self.relay.transport is not None:
            self.relay.transport.sendto(data, self.client)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable from a dead endpoint: the client retries

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
