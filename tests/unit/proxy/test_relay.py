"""The userspace relay on loopback: bytes both ways, half-close, back-pressure, failover, timeouts, resets."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvloop

from kubesvc.proxy.dataplanes.relay import Balancer, TcpRelayEngine


def on_both_loops(case):
    """Run an async test on asyncio's own loop and on uvloop (which the proxy runs on)."""
    @pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
    def test(loop: str) -> None:
        (uvloop.run if loop == "uvloop" else asyncio.run)(case())
    test.__name__, test.__doc__ = case.__name__, case.__doc__
    return test


async def _echo_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read()  # until the client's EOF (half-close)
    writer.write(data.upper())
    await writer.drain()
    writer.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _relay(balancer: Balancer, **kw):
    lst = TcpRelayEngine.of(asyncio.get_running_loop()).listen("127.0.0.1", 0, balancer, **kw)
    return lst, lst.port


@on_both_loops
async def test_relay_passes_half_close_and_fails_over():
    backend = await asyncio.start_server(_echo_upper, "127.0.0.1", 0)
    port = backend.sockets[0].getsockname()[1]
    balancer = Balancer([("127.0.0.1", _closed_port()), ("127.0.0.1", port)])
    relay, rport = await _relay(balancer, connect_timeout=1)
    try:
        for _ in range(4):  # round robin hits the refused endpoint every other time: failover
            reader, writer = await asyncio.open_connection("127.0.0.1", rport)
            writer.write(b"hello " * 10000)
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b"HELLO " * 10000
            writer.close()
    finally:
        relay.close()
        backend.close()


@on_both_loops
async def test_no_endpoint_resets_the_client():
    balancer = Balancer([("127.0.0.1", _closed_port())])
    relay, rport = await _relay(balancer)
    try:
        with pytest.raises(ConnectionResetError):  # seen by the connect or by the first read
            reader, _ = await asyncio.open_connection("127.0.0.1", rport)
            await asyncio.wait_for(reader.read(), 5)
    finally:
        relay.close()


def _stuck_listener() -> tuple[socket.socket, list[socket.socket]]:
    """A listener whose accept queue is full: further SYNs are dropped, connecting hangs."""
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(0)
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(stuck.getsockname())
        fillers.append(f)
    return stuck, fillers


@on_both_loops
async def test_connect_timeout_moves_on_to_the_next_endpoint():
    stuck, fillers = _stuck_listener()
    backend = await asyncio.start_server(_echo_upper, "127.0.0.1", 0)
    balancer = Balancer([stuck.getsockname(), backend.sockets[0].getsockname()[:2]])
    relay, rport = await _relay(balancer, connect_timeout=0.5)
    loop = asyncio.get_running_loop()
    try:
        t0 = loop.time()
        reader, writer = await asyncio.open_connection("127.0.0.1", rport)
        writer.write(b"late")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b"LATE"
        assert 0.4 < loop.time() - t0 < 2.5
        writer.close()
    finally:
        relay.close()
        backend.close()
        stuck.close()
        for f in fillers:
            f.close()


@on_both_loops
async def test_back_pressure_both_ways_keeps_every_byte():
    """A slow reader on either side: the relay stops reading the fast side instead of buffering it all."""
    size = 24 << 20
    got = {}

    async def slow_sink_then_flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = 0
        while chunk := await reader.read(1 << 16):  # the client's upload, read slowly
            n += len(chunk)
            await asyncio.sleep(0.0005)
        got["up"] = n
        block = b"z" * (1 << 20)
        for _ in range(size >> 20):  # then a download the client reads slowly
            writer.write(block)
            await writer.drain()
        writer.close()

    backend = await asyncio.start_server(slow_sink_then_flood, "127.0.0.1", 0)
    relay, rport = await _relay(Balancer([backend.sockets[0].getsockname()[:2]]))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", rport)
        block = b"u" * (1 << 20)
        for _ in range(size >> 20):
            writer.write(block)
            await writer.drain()
        writer.write_eof()
        n = 0
        while chunk := await asyncio.wait_for(reader.read(1 << 16), 10):
            n += len(chunk)
            if n % (1 << 20) < len(chunk):
                await asyncio.sleep(0.005)
        assert (got.get("up"), n) == (size, size)
        writer.close()
    finally:
        relay.close()
        backend.close()


@on_both_loops
async def test_many_concurrent_half_closed_connections():
    """Connection-close load through the half-close path: every answer complete, nothing left open."""
    backend = await asyncio.start_server(_echo_upper, "127.0.0.1", 0)
    relay, rport = await _relay(Balancer([backend.sockets[0].getsockname()[:2]]))
    engine = relay.engine

    async def one(i: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", rport)
        writer.write(b"req %d" % i)
        writer.write_eof()
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return data

    try:
        for _ in range(3):
            answers = await asyncio.gather(*(one(i) for i in range(200)))
            assert answers == [b"REQ %d" % i for i in range(200)]
        for _ in range(50):  # the relay closes both sockets once both directions ended
            if len(engine.handlers) == 1:
                break
            await asyncio.sleep(0.02)
        assert list(engine.handlers) == [relay.fd]
    finally:
        relay.close()
        backend.close()


@on_both_loops
async def test_a_reset_upstream_resets_the_client():
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        writer.transport.abort()

    backend = await asyncio.start_server(reset, "127.0.0.1", 0)
    relay, rport = await _relay(Balancer([backend.sockets[0].getsockname()[:2]]))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", rport)
        writer.write(b"ping")
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(), 5)
        writer.close()
    finally:
        relay.close()
        backend.close()


@on_both_loops
async def test_closing_the_listener_keeps_accepted_connections():
    release = asyncio.Event()

    async def late_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(4)
        await release.wait()
        writer.write(b"still here")
        writer.close()

    backend = await asyncio.start_server(late_answer, "127.0.0.1", 0)
    relay, rport = await _relay(Balancer([backend.sockets[0].getsockname()[:2]]))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", rport)
        writer.write(b"ping")
        await asyncio.sleep(0.1)
        relay.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", rport)
        release.set()
        assert await asyncio.wait_for(reader.read(), 5) == b"still here"
        writer.close()
    finally:
        relay.close()
        backend.close()


@on_both_loops
async def test_a_slow_handshake_is_waited_for():
    """An endpoint that answers the SYN late (its accept queue was full): the relay waits, then relays."""
    stuck, fillers = _stuck_listener()
    relay, rport = await _relay(Balancer([stuck.getsockname()]), connect_timeout=5)
    loop = asyncio.get_running_loop()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", rport)
        writer.write(b"slow")
        writer.write_eof()
        await asyncio.sleep(0.2)
        stuck.setblocking(False)
        accepted = []
        while True:  # empty the queue: the relay's retransmitted SYN gets through
            try:
                accepted.append(stuck.accept()[0])
            except BlockingIOError:
                break
        conn, _ = await asyncio.wait_for(loop.sock_accept(stuck), 5)
        conn.setblocking(False)
        assert await loop.sock_recv(conn, 100) == b"slow"
        await loop.sock_sendall(conn, b"answered")
        conn.close()
        assert await asyncio.wait_for(reader.read(), 5) == b"answered"
        writer.close()
        for a in accepted:
            a.close()
    finally:
        relay.close()
        stuck.close()
        for f in fillers:
            f.close()
