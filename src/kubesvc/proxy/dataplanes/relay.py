"""TCP and UDP relays for the userspace data plane: no thread per connection, no copies beyond one read.

A :class:`Balancer` picks the endpoint for a new connection (round robin, or
ClientIP affinity with a timeout).

TCP: one :class:`TcpRelayEngine` per event loop serves every :class:`TcpListener`
and relayed connection on raw non-blocking sockets in one epoll set, which the
event loop watches as a single descriptor (see the engine's docstring for why not
asyncio transports: a new connection cost the relay twice HAProxy's CPU with
them). Each connection is two :class:`_End` objects; bytes read from one are sent
to the other straight from a shared buffer, with back-pressure both ways (a socket
whose peer is backed up stops being read), half-close passed on (an EOF becomes
shutdown(SHUT_WR) of the other socket once what it is owed has been sent), a
reset passed on as a reset, and a refused or timed-out endpoint replaced by the
next one.

(The uvloop transports used before needed care with ``write_eof()``: uvloop
0.21-0.23 aborted with "double free or corruption" under connection-close load.
The engine calls shutdown() itself; tests/integration/proxy still hammers that
path under load.)

UDP: :class:`UdpRelay`, asyncio datagram endpoints, one connected upstream socket
per client address.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import select
import socket
import struct
import time
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from kubesvc.proxy.dataplanes.transparent import SourceKeeper

log = logging.getLogger(__name__)

Addr = tuple[str, int]


class Balancer:
    """Endpoint choice for one service port: round robin, optional ClientIP affinity."""

    def __init__(self, endpoints: list[Addr] | None = None, affinity_timeout: int = 0):
        self.endpoints: list[Addr] = list(endpoints or [])
        self.affinity_timeout = affinity_timeout
        self._next = 0
        self._affinity: dict[str, tuple[Addr, float]] = {}
        # connect from the client's address (externalTrafficPolicy: Local; transparent.py)
        self.source: SourceKeeper | None = None

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
        if self.affinity_timeout:
            now = time.monotonic()
            pinned = self._affinity.get(client_ip)
            if pinned and pinned[0] in eps and now - pinned[1] < self.affinity_timeout:
                self._affinity[client_ip] = (pinned[0], now)
                return pinned[0]
            ep = eps[self._next % len(eps)]
            self._affinity[client_ip] = (ep, now)
        else:
            ep = eps[self._next % len(eps)]
        self._next += 1
        return ep


_RBUF = 262144  # one read: uvloop's size too; bulk wants big reads and small ones cost nothing more
IN, OUT, ERR, HUP = select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR, select.EPOLLHUP
_DONTWAIT = socket.MSG_DONTWAIT
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on with 0 s: close() sends RST
_RawSocket = socket.socket.__mro__[1]  # _socket.socket: the C type, without socket.socket's Python layer


class TcpRelayEngine:
    """Every TCP relay of one event loop: raw sockets in one epoll set nested in the loop.

    The event loop watches a single descriptor, the epoll set; when it is ready the
    engine takes every ready socket in one epoll_wait and serves it. Per relayed
    connection that is the system calls HAProxy makes (accept4, socket, connect,
    TCP_NODELAY on both sockets, epoll_ctl, recv/send, close), plus a getsockname
    (Python wrapping the accepted descriptor) and a second connect (see dial), and
    two small Python objects. uvloop transports, used before, added getsockname, getpeername and an
    SO_ERROR check per socket, io_uring-batched epoll_ctl, and callbacks scheduled
    a loop turn later for each side, which made a new connection cost the relay
    about twice HAProxy's CPU. Reads go into one shared buffer and are sent straight
    from it; only what the other socket does not take at once is copied.

    Level-triggered: one read per ready socket per round, and a socket whose peer is
    backed up is taken out of the set (back-pressure) until the peer drains.
    """

    TICK = 0.25  # connect timeouts are swept this often (one timer, not one per connect)
    _by_loop: dict[asyncio.AbstractEventLoop, "TcpRelayEngine"] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.epoll = select.epoll()
        self.handlers: dict[int, Callable[[int], None]] = {}
        self.buf = bytearray(_RBUF)
        self.view = memoryview(self.buf)
        self.dialing: dict[_End, int] = {}  # upstream ends still connecting -> sweep tick due
        self.shuts: list[_End] = []  # EOFs to pass on at the end of this round (see _End.shut)
        self.tick = 0
        self._sweeper: asyncio.TimerHandle | None = None
        loop.add_reader(self.epoll.fileno(), self._serve)

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop | None = None) -> "TcpRelayEngine":
        loop = loop or asyncio.get_running_loop()
        e = cls._by_loop.get(loop)
        if e is None:
            e = cls._by_loop[loop] = cls(loop)
        return e

    def listen(self, host: str, port: int, balancer: Balancer, *, connect_timeout: float = 3.0,
               backlog: int = 4096) -> "TcpListener":
        return TcpListener(self, host, port, balancer, connect_timeout, backlog)

    def _serve(self) -> None:
        handlers = self.handlers
        for fd, ev in self.epoll.poll(0):
            h = handlers.get(fd)
            if h is not None:
                try:
                    h(ev)
                except Exception:  # a bug must cost one connection, not the round's others
                    log.exception("relaying on fd %d", fd)
                    end = getattr(h, "__self__", None)
                    if isinstance(end, _End):
                        end.reset()
        if self.shuts:
            shuts, self.shuts = self.shuts, []
            for end in shuts:
                end.shut_now()
        if not handlers:
            self._retire()

    def _retire(self) -> None:
        """Nothing left to serve: give the descriptor back (tests run many short-lived loops)."""
        if self._by_loop.get(self.loop) is self:
            del self._by_loop[self.loop]
        if not self.epoll.closed:
            self.loop.remove_reader(self.epoll.fileno())
            self.epoll.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def relay(self, fd: int, family: int, client_ip: str, balancer: Balancer, connect_timeout: float) -> None:
        """Relay one accepted connection: dial an endpoint, then pass bytes both ways."""
        client = _End(self, _RawSocket(family, socket.SOCK_STREAM, 0, fd))
        # the accepted socket stays blocking (making it non-blocking is another system
        # call): every recv/send on it passes MSG_DONTWAIT instead
        try:
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # already reset by the client: the first read will say so
        self.dial(client, balancer, client_ip, connect_timeout, None)

    def dial(self, client: "_End", balancer: Balancer, client_ip: str, timeout: float,
             tried: set[Addr] | None) -> None:
        """Connect to the next endpoint (round robin / affinity); reset the client when none is left."""
        while True:
            ep = balancer.pick(client_ip, tried)
            if ep is None:
                client.reset()  # as a refused connection would
                return
            try:
                s = _RawSocket(socket.AF_INET6 if ":" in ep[0] else socket.AF_INET,
                               socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            except OSError as e:  # out of descriptors
                log.warning("relay to %s:%s: %s", ep[0], ep[1], e)
                client.reset()
                return
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if balancer.source is not None and balancer.source.applies(client_ip):
                balancer.source.bind(s, client_ip)
            err = s.connect_ex(ep)
            if err == errno.EINPROGRESS:
                # To a pod on this node (veth, bridge, loopback) the handshake completes
                # inside the first connect(): asking again says so and saves a loop round.
                err = s.connect_ex(ep)
            if err in (0, errno.EISCONN):
                _End(self, s).link(client)
                return
            if err in (errno.EINPROGRESS, errno.EALREADY):
                up = _End(self, s)
                up.dial = (client, balancer, client_ip, timeout, tried, ep)
                self.handlers[up.fd] = up.dialed
                up.want(OUT)
                self.dialing[up] = self.tick + 1 + int(timeout / self.TICK)
                if self._sweeper is None:
                    self._sweeper = self.loop.call_later(self.TICK, self._sweep)
                return
            s.close()
            log.debug("endpoint %s:%s failed: %s", ep[0], ep[1], os.strerror(err))
            tried = tried or set()
            tried.add(ep)

    def _sweep(self) -> None:
        self.tick += 1
        for end in [e for e, due in self.dialing.items() if due <= self.tick]:
            end.dial_failed("timeout")
        self._sweeper = self.loop.call_later(self.TICK, self._sweep) if self.dialing else None


class TcpListener:
    """One listening TCP socket of a service port, served by the loop's :class:`TcpRelayEngine`."""

    def __init__(self, engine: TcpRelayEngine, host: str, port: int, balancer: Balancer,
                 connect_timeout: float = 3.0, backlog: int = 4096):
        self.engine = engine
        self.balancer = balancer
        self.connect_timeout = connect_timeout
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.fd = sock.fileno()
        engine.handlers[self.fd] = self._accept
        engine.epoll.register(self.fd, IN)

    def _accept(self, _ev: int) -> None:
        accept, engine, family = self.sock._accept, self.engine, self.family  # type: ignore[attr-defined]
        want_ip = bool(self.balancer.affinity_timeout) or self.balancer.source is not None
        for _ in range(16):  # a few per round: the others wait their turn in the backlog
            try:
                fd, addr = accept()
            except BlockingIOError:
                return
            except OSError as err:  # out of descriptors: stop accepting for a moment
                log.warning("accept on port %s: %s", self.port, err)
                engine.epoll.modify(self.fd, 0)
                engine.loop.call_later(0.1, self._resume)
                return
            engine.relay(fd, family, addr[0] if want_ip else "", self.balancer, self.connect_timeout)

    def _resume(self) -> None:
        if self.fd in self.engine.handlers:
            self.engine.epoll.modify(self.fd, IN)

    def close(self) -> None:
        """Stop accepting; connections already accepted run to their end."""
        if self.engine.handlers.pop(self.fd, None) is not None:
            self.sock.close()
            if not self.engine.handlers:
                self.engine._retire()


class _End:
    """One socket of a relayed connection: what it reads goes to `peer`.

    Half-close is passed on (EOF read here becomes shutdown(SHUT_WR) of the peer once
    the peer's pending bytes are sent); when both directions have ended both sockets
    close; a reset or error on either side resets the other (SO_LINGER 0).
    """

    __slots__ = ("engine", "sock", "fd", "peer", "mask", "out", "eof_in", "eof_pending", "closed", "dial")

    def __init__(self, engine: TcpRelayEngine, sock: socket.socket):
        self.engine = engine
        self.sock = sock
        self.fd = sock.fileno()
        self.peer: _End | None = None
        self.mask = 0              # events asked of the epoll set (0: not in it)
        self.out: bytes | memoryview | None = None  # bytes the kernel did not take yet
        self.eof_in = False        # this socket sent us EOF
        self.eof_pending = False   # pass EOF (shutdown) to this socket once `out` is sent
        self.closed = False
        self.dial: tuple | None = None  # while connecting: (client, balancer, client_ip, timeout, tried, ep)

    def want(self, mask: int) -> None:
        if mask != self.mask:
            ep = self.engine.epoll
            if not mask:
                ep.unregister(self.fd)
            elif not self.mask:
                ep.register(self.fd, mask)
            else:
                ep.modify(self.fd, mask)
            self.mask = mask

    def link(self, client: "_End") -> None:
        """Connected: both sockets start reading."""
        self.peer, client.peer = client, self
        eng = self.engine
        eng.handlers[self.fd] = self.event
        eng.handlers[client.fd] = client.event
        self.want(IN)
        eng.epoll.register(client.fd, IN)  # the client was in no set while we dialled
        client.mask = IN

    # -- connecting (slow path: the handshake did not complete inside connect()) --
    def dialed(self, ev: int) -> None:
        err = self.sock.connect_ex(self.dial[5])  # type: ignore[index]  # the endpoint
        if err in (errno.EINPROGRESS, errno.EALREADY):
            return  # a stale readiness: still connecting
        if err not in (0, errno.EISCONN):
            self.dial_failed(os.strerror(err))
            return
        self.engine.dialing.pop(self, None)
        client = self.dial[0]  # type: ignore[index]
        self.dial = None
        self.link(client)

    def dial_failed(self, why: str) -> None:
        client, balancer, client_ip, timeout, tried, ep = self.dial  # type: ignore[misc]
        self.dial = None
        eng = self.engine
        eng.dialing.pop(self, None)
        eng.handlers.pop(self.fd, None)
        self.closed = True
        self.sock.close()
        log.debug("endpoint %s:%s failed: %s", ep[0], ep[1], why)
        tried = tried or set()
        tried.add(ep)
        eng.dial(client, balancer, client_ip, timeout, tried)

    # -- relaying --
    def event(self, ev: int) -> None:
        """Flush what this socket is owed, then read once and send it on (one call: the hot path)."""
        if ev & OUT or (ev & (HUP | ERR) and not self.mask & IN):
            self.flush()
            if self.closed:
                return
        if not (self.mask & IN and ev & (IN | HUP | ERR)):
            return
        eng = self.engine
        try:
            n = self.sock.recv_into(eng.buf, _RBUF, _DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            self.reset()  # reset propagates as reset
            return
        if not n:
            self.read_eof()
            return
        peer = self.peer
        try:
            sent = peer.sock.send(eng.view[:n], _DONTWAIT)  # type: ignore[union-attr]
        except BlockingIOError:
            sent = 0
        except OSError:
            self.reset()
            return
        if sent < n:
            peer.out = eng.view[sent:n].tobytes()  # type: ignore[union-attr]
            peer.want(peer.mask | OUT)  # type: ignore[union-attr]
            self.want(self.mask & ~IN)  # back-pressure: read again once the peer drained

    def flush(self) -> None:
        out = self.out
        if out is not None:
            try:
                sent = self.sock.send(out, _DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                self.reset()
                return
            if sent < len(out):
                self.out = memoryview(out)[sent:]
                return
            self.out = None
        self.want(self.mask & ~OUT)
        peer = self.peer
        if peer is not None and not peer.eof_in and not peer.closed:
            peer.want(peer.mask | IN)
        if self.eof_pending:
            self.eof_pending = False
            if self.eof_in and peer is not None and peer.out is None:
                self.close()  # that was the last of both directions
            else:
                self.shut()

    def read_eof(self) -> None:
        self.eof_in = True
        peer = self.peer
        if peer.out is not None:  # type: ignore[union-attr]
            peer.eof_pending = True  # type: ignore[union-attr]  # after what it still owes the peer
        elif peer.eof_in and self.out is None:  # type: ignore[union-attr]
            self.close()  # both directions ended: close both, no shutdown needed
            return
        else:
            peer.shut()  # type: ignore[union-attr]
        self.want(self.mask & ~IN)  # level-triggered: an EOF stays readable

    def shut(self) -> None:
        """Pass an EOF on, at the end of this round of events.

        A client that closes as soon as it has its answer (`Connection: close`) has
        often sent its own EOF by then: both directions are over and both sockets
        just close, saving the shutdown() HAProxy saves too.
        """
        self.engine.shuts.append(self)

    def shut_now(self) -> None:
        if self.closed:
            return
        peer = self.peer
        if self.eof_in and peer is not None and peer.eof_in and self.out is None and peer.out is None:
            self.close()
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self.reset()

    def close(self) -> None:
        handlers = self.engine.handlers
        peer = self.peer
        for e in (self, peer):
            if e is not None and not e.closed:
                e.closed = True
                handlers.pop(e.fd, None)
                e.sock.close()  # also leaves the epoll set
        if peer is not None:
            # break the peer <-> peer cycle: both ends go with their last reference,
            # not with a cyclic garbage collection (gen0 collections showed in profiles)
            self.peer = peer.peer = None

    def reset(self) -> None:
        for e in (self, self.peer):
            if e is not None and not e.closed:
                try:
                    e.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                except OSError:
                    pass
        self.close()


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
        source = self.relay.balancer.source
        try:
            if source is not None and source.applies(self.client[0]):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    source.bind(sock, self.client[0])
                    sock.setblocking(False)
                    sock.connect(self.endpoint)
                except OSError:
                    sock.close()
                    raise
                await loop.create_datagram_endpoint(lambda: self, sock=sock)
            else:
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
