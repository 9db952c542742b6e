"""Relaying a delivered connection to its application on this node (splice, proxy-v2 and
transparent delivery), on asyncio transports and protocols.

Each side's `data_received` writes straight into the other side's transport: no coroutine, no
stream buffer and no task per chunk (the stream-based pumps this replaces cost about a third of
an adopting node's CPU per short request). Flow control follows the transports: when one side's
send buffer passes its high-water mark, reading from the other side pauses until it drains. An
end-of-file is passed on as a half close; the relay ends when both sides are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
from collections.abc import Callable

_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


class _Side(asyncio.Protocol):
    """One socket of the relay; `peer` is the other."""

    def __init__(self, closed: asyncio.Future[None]) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.early: list[bytes] = []  # what arrived before the other side was connected
        self.eof = False  # this side's socket reached end-of-file (its far end is done sending)
        self.lost = False
        self.closed = closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = self.peer
        if peer is not None and peer.early:
            transport.writelines(peer.early)
            peer.early.clear()
        if peer is not None and peer.eof and transport.can_write_eof():
            transport.write_eof()

    def _out(self) -> asyncio.Transport | None:
        peer = self.peer
        return peer.transport if peer is not None and not peer.lost else None

    def data_received(self, data: bytes) -> None:
        out = self._out()
        if out is None:
            self.early.append(data)
        else:
            out.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        out = self._out()
        if out is not None and out.can_write_eof():
            out.write_eof()
        if self.peer is not None and self.peer.eof and self.transport is not None:
            self.transport.close()  # both directions are finished
            if out is not None:
                out.close()
        return True  # keep our sending side open until the other side finishes too

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.lost:
            if exc is None and not self.eof:
                peer.transport.close()  # closed without an end-of-file: flush, then close
            elif exc is not None:  # a reset: pass it on as a reset, not as an end-of-file
                peer_sock = peer.transport.get_extra_info("socket")
                if peer_sock is not None:
                    with contextlib.suppress(OSError):
                        peer_sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                peer.transport.abort()
        if (peer is None or peer.lost or peer.transport is None) and not self.closed.done():
            self.closed.set_result(None)


IP_TRANSPARENT = 19


async def _connect_from(source: tuple[str, int], app: tuple[str, int]) -> socket.socket:
    """A TCP connection to `app` from `source`, an address that is not this node's: from the
    client's own port when that 4-tuple is free, else from an ephemeral one."""
    for port in (source[1], 0):
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            upstream.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            upstream.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            upstream.bind((source[0], port))
            upstream.setblocking(False)
            await asyncio.get_running_loop().sock_connect(upstream, app)
            return upstream
        except OSError as e:
            upstream.close()
            if not port or e.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                raise
        except BaseException:
            upstream.close()
            raise
    raise AssertionError("unreachable")


async def relay(
    sock: socket.socket,
    app: tuple[str, int],
    first: bytes,
    connect_timeout_s: float,
    connected: Callable[[], None] = lambda: None,
    source: tuple[str, int] | None = None,
) -> None:
    """Connect to the application at `app` (then call `connected`), send it `first`, then relay
    between it and the client's live socket `sock` until both are closed. With `source`, connect
    from that address and port (IP_TRANSPARENT; needs CAP_NET_ADMIN and the local route of replies,
    datapath.netlink.route_loopback_replies_locally). OSError when the application cannot be
    reached (the caller closes `sock`)."""
    loop = asyncio.get_running_loop()
    closed: asyncio.Future[None] = loop.create_future()
    app_side, client_side = _Side(closed), _Side(closed)
    app_side.peer, client_side.peer = client_side, app_side
    async with asyncio.timeout(connect_timeout_s):
        if source:
            upstream = await _connect_from(source, app)
            await loop.create_connection(lambda: app_side, sock=upstream)
        else:
            await loop.create_connection(lambda: app_side, *app)
    assert app_side.transport is not None
    connected()
    if first:
        app_side.transport.write(first)
    sock.setblocking(False)
    try:
        await loop.connect_accepted_socket(lambda: client_side, sock=sock)
    except BaseException:
        app_side.transport.abort()
        raise
    await closed
