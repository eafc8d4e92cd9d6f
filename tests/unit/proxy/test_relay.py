"""The userspace relay on loopback: bytes both ways, half-close, failover to the next endpoint."""

from __future__ import annotations

import asyncio
import socket

from kubesvc.proxy.dataplanes.relay import Balancer, TcpRelay


async def _echo_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read()  # until the client's EOF (half-close)
    writer.write(data.upper())
    await writer.drain()
    writer.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_relay_passes_half_close_and_fails_over():
    backend = await asyncio.start_server(_echo_upper, "127.0.0.1", 0)
    port = backend.sockets[0].getsockname()[1]
    balancer = Balancer([("127.0.0.1", _closed_port()), ("127.0.0.1", port)])
    loop = asyncio.get_running_loop()
    relay = await loop.create_server(lambda: TcpRelay(balancer, connect_timeout=1), "127.0.0.1", 0)
    rport = relay.sockets[0].getsockname()[1]
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


async def test_no_endpoint_resets_the_client():
    balancer = Balancer([("127.0.0.1", _closed_port())])
    loop = asyncio.get_running_loop()
    relay = await loop.create_server(lambda: TcpRelay(balancer), "127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.sockets[0].getsockname()[1])
        try:
            data = await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:
            data = b""
        assert data == b""
        writer.close()
    finally:
        relay.close()
