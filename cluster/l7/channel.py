"""The L7 handoff channel between the scheduler and the nodes connections move to.

`AdoptMessage` / `AdoptReply` (proto/cluster/api/v1/cluster.proto) travel as length-prefixed
frames on one long-lived TCP connection per (scheduler, node) pair, to the node's API port + 1.
An adopt message is answered once the node holds the restored connection; a commit message is
not answered (one round trip per handoff). With TLS only node certificates may connect, and an
adopt is carried out only for the node that leads now; without TLS (--insecure), only the
addresses of registered nodes may connect. A frame here injects a TCP connection into the node.

Why not a gRPC method: the first versions were `Hop.Adopt`/`Hop.Commit` unary calls, then one
bidirectional gRPC stream; a profile of the scheduler under load put most of its CPU in
grpc.aio's call and stream-write machinery and its threads (bench/hop.py: 1.3 k and 1.7 k
connections per scheduler CPU-second). A plain framed socket on the event loop costs a few tens
of microseconds per message.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import struct
from collections.abc import Awaitable, Callable

import structlog
from google.protobuf.message import DecodeError

from cluster.api.v1 import cluster_pb2 as pb
from cluster.config import parse_hostport
from cluster.l7.adopt import Adopter
from cluster.tls import NODE_NAME, Access, Identity, TlsFiles, identity_of
from datapath.tcprepair import RepairError, TcpState

log = structlog.get_logger()
FRAME = struct.Struct("!I")
MAX_FRAME = 1 << 20
CONNECT_TIMEOUT_S = 0.5


def hop_address(api_endpoint: str) -> tuple[str, int]:
    host, port = parse_hostport(api_endpoint, "endpoint")
    return host, port + 1


def frame(message: pb.AdoptMessage | pb.AdoptReply) -> bytes:
    data = message.SerializeToString()
    return FRAME.pack(len(data)) + data


class Outbox:
    """Frames written during one pass of the event loop leave in one write: one TLS record and
    one send instead of one per frame (under load, a pass commits and answers several handoffs;
    the kernel's send path on a veth also runs the receiver's stack, per send)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.frames: list[bytes] = []

    def send(self, data: bytes) -> None:
        if not self.frames:
            asyncio.get_running_loop().call_soon(self._flush)
        self.frames.append(data)

    def _flush(self) -> None:
        data = b"".join(self.frames)
        self.frames.clear()
        if not self.writer.is_closing():
            self.writer.write(data)


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    try:
        (size,) = FRAME.unpack(await reader.readexactly(FRAME.size))
        if size > MAX_FRAME:
            raise ValueError(f"a {size}-byte frame is larger than {MAX_FRAME}")
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        return None


def state_to_pb(s: TcpState) -> pb.TcpState:
    return pb.TcpState(
        local_addr=s.local[0],
        local_port=s.local[1],
        peer_addr=s.peer[0],
        peer_port=s.peer[1],
        snd_seq=s.snd_seq,
        rcv_seq=s.rcv_seq,
        send_queue=s.send_queue,
        recv_queue=s.recv_queue,
        mss=s.mss,
        snd_wscale=s.snd_wscale,
        rcv_wscale=s.rcv_wscale,
        sack=s.sack,
        timestamps=s.timestamps,
        tsval=s.tsval,
        window=s.window,
        peer_closed=s.peer_closed,
    )


def state_from_pb(m: pb.TcpState) -> TcpState:
    return TcpState(
        (m.local_addr, m.local_port),
        (m.peer_addr, m.peer_port),
        m.snd_seq,
        m.rcv_seq,
        m.send_queue,
        m.recv_queue,
        m.mss,
        m.snd_wscale,
        m.rcv_wscale,
        m.sack,
        m.timestamps,
        m.tsval,
        m.window,
        m.peer_closed,
    )


MayAdopt = Callable[[Identity | None, str], Awaitable[bool]]


def peer_identity(writer: asyncio.StreamWriter) -> Identity | None:
    ssl_object = writer.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return identity_of(der) if der else None


async def serve(
    adopter: Adopter, api_endpoint: str, may_adopt: MayAdopt, tls: TlsFiles | None = None
) -> asyncio.Server:
    """Accept handoff channels and carry out their messages: with `tls`, only from node
    certificates, each adopt only from the node that leads now; without, only from the
    addresses of registered nodes (`may_adopt` decides both)."""

    async def channel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer, identity = writer.get_extra_info("peername")[0], peer_identity(writer)
        node = identity is not None and identity.access == Access.NODE
        if not (node if tls is not None else await may_adopt(None, peer)):
            adopter.stats["channel_refused"] += 1
            log.warning(
                "handoff_channel_refused", peer=peer, reason="not a node (certificate or address)"
            )
            writer.close()
            return
        out = Outbox(writer)
        stream = os.urandom(4).hex()  # handoff ids are the scheduler's, unique per channel
        try:
            while (data := await read_frame(reader)) is not None:
                m = pb.AdoptMessage.FromString(data)
                handoff_id = f"{stream}:{m.id}"
                if m.commit:
                    adopter.commit(handoff_id, m.go)
                    continue
                if not await may_adopt(identity, peer):
                    adopter.stats["adopt_refused"] += 1
                    out.send(frame(pb.AdoptReply(id=m.id, error=_NOT_LEADER)))
                    continue
                try:
                    adopter.adopt(m.service, state_from_pb(m.state), handoff_id)
                    reply = pb.AdoptReply(id=m.id, ok=True)
                except RepairError as e:
                    reply = pb.AdoptReply(id=m.id, error=str(e))
                out.send(frame(reply))
        except (ConnectionError, DecodeError, ValueError) as e:
            log.warning("handoff_channel_broken", peer=peer, reason=str(e))
        finally:
            writer.close()

    host, port = hop_address(api_endpoint)
    ssl = tls.server_context() if tls is not None else None
    return await asyncio.start_server(channel, host, port, ssl=ssl)


_NOT_LEADER = "refused: only the node that leads now may hand connections off here"


class HandoffChannel:
    """The scheduler's end of one node's handoff channel; (re)connected on use."""

    def __init__(self, api_endpoint: str, tls: TlsFiles | None = None) -> None:
        self.address = hop_address(api_endpoint)
        self.ssl = tls.client_context() if tls is not None else None
        self.outbox: Outbox | None = None  # on the open connection's writer
        self.waiting: dict[int, asyncio.Future[pb.AdoptReply]] = {}
        self.ids = itertools.count(1)
        self.connecting = asyncio.Lock()
        self.reader: asyncio.Task[None] | None = None  # a reference keeps the task alive

    async def _open(self) -> Outbox:
        async with self.connecting:
            if self.outbox is None or self.outbox.writer.is_closing():
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    reader, writer = await asyncio.open_connection(
                        *self.address,
                        ssl=self.ssl,
                        server_hostname=NODE_NAME if self.ssl else None,
                    )
                self.outbox = Outbox(writer)
                self.reader = asyncio.get_running_loop().create_task(self._read(reader))
            return self.outbox

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while (data := await read_frame(reader)) is not None:
                reply = pb.AdoptReply.FromString(data)
                future = self.waiting.pop(reply.id, None)
                if future is not None and not future.done():
                    future.set_result(reply)
        except (ConnectionError, DecodeError, ValueError):
            pass
        finally:
            for future in self.waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError("the handoff channel closed"))
            self.waiting.clear()
            self.reset()

    async def adopt(self, service: str, state: TcpState, timeout_s: float) -> tuple[int, str]:
        """(handoff id, "") once the node holds the restored connection; (id, reason) if not."""
        handoff_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.waiting[handoff_id] = future
        try:
            async with asyncio.timeout(timeout_s):
                out = await self._open()
                out.send(
                    frame(pb.AdoptMessage(id=handoff_id, service=service, state=state_to_pb(state)))
                )
                reply = await future
        finally:
            self.waiting.pop(handoff_id, None)
        return handoff_id, "" if reply.ok else reply.error or "refused"

    async def commit(self, handoff_id: int, go: bool) -> None:
        out = await self._open()
        out.send(frame(pb.AdoptMessage(id=handoff_id, commit=True, go=go)))
        await out.writer.drain()

    def reset(self) -> None:
        if self.outbox is not None:
            self.outbox.writer.close()
            self.outbox = None

    async def close(self) -> None:
        self.reset()
