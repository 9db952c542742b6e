"""The splice relay (cluster/l7/relay.py) on real loopback sockets: bytes both ways in order,
the first bytes ahead of the client's, half closes passed on, flow control under a slow reader,
an unreachable application, an application that resets."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Awaitable, Callable

import pytest

from cluster.l7.relay import relay

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def app_server(handler: Handler) -> tuple[asyncio.Server, tuple[str, int]]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[:2]


async def client_pair() -> tuple[socket.socket, socket.socket]:
    """(the client's socket, the accepted one the relay takes)."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    listener.close()
    client.setblocking(False)
    return client, accepted


@pytest.fixture
async def loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


async def echo_upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    data = await reader.read()  # until the client's half close
    writer.write(data.upper())
    await writer.drain()
    writer.close()


async def test_bytes_flow_both_ways_first_bytes_first_and_half_closes_pass(
    loop: asyncio.AbstractEventLoop,
) -> None:
    server, address = await app_server(echo_upper)
    client, accepted = await client_pair()
    connected: list[bool] = []
    task = loop.create_task(relay(accepted, address, b"head:", 1.0, lambda: connected.append(True)))
    await loop.sock_sendall(client, b"body")
    client.shutdown(socket.SHUT_WR)  # the app reads until this EOF, then answers and closes
    got = b""
    while chunk := await loop.sock_recv(client, 65536):
        got += chunk
    assert got == b"HEAD:BODY"
    await asyncio.wait_for(task, 2)
    assert connected == [True]
    client.close()
    server.close()


async def test_a_slow_reader_gets_every_byte_of_a_large_answer(
    loop: asyncio.AbstractEventLoop,
) -> None:
    size = 16 * 2**20
    body = bytes(range(256)) * (size // 256)

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(3)
        writer.write(body)
        await writer.drain()
        writer.close()

    server, address = await app_server(big)
    client, accepted = await client_pair()
    task = loop.create_task(relay(accepted, address, b"", 1.0))
    await loop.sock_sendall(client, b"GET")
    digest, got = hashlib.sha256(), 0
    while chunk := await loop.sock_recv(client, 65536):
        digest.update(chunk)
        got += len(chunk)
        if got < 2**20:
            await asyncio.sleep(0.001)  # slow at first: the relay must pause, not buffer all
    assert got == size
    assert digest.digest() == hashlib.sha256(body).digest()
    client.close()  # the app closed first: the relay waits for the client's side too
    await asyncio.wait_for(task, 2)
    server.close()


async def test_an_unreachable_application_raises_and_never_connects(
    loop: asyncio.AbstractEventLoop,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        address = s.getsockname()  # closed at once: nothing listens there
    client, accepted = await client_pair()
    connected: list[bool] = []
    with pytest.raises(ConnectionRefusedError):
        await relay(accepted, address, b"x", 1.0, lambda: connected.append(True))
    assert connected == []
    accepted.close()
    client.close()


async def test_an_application_reset_ends_the_relay_and_the_client_connection(
    loop: asyncio.AbstractEventLoop,
) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(4)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()

    server, address = await app_server(reset)
    client, accepted = await client_pair()
    task = loop.create_task(relay(accepted, address, b"ping", 1.0))
    await asyncio.wait_for(task, 2)
    with pytest.raises(ConnectionResetError):
        await loop.sock_recv(client, 65536)  # a reset, as the application sent, not an EOF
    client.close()
    server.close()
