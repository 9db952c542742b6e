"""The receiving end of the L7 handoff: restore a connection, wait for the go, hand it over.

`Adopter.adopt` restores the socket from the scheduler's snapshot, bound to the VIP and still in
repair mode (it sends nothing yet); `commit(go=True)`, which the scheduler sends once the
client's packets are steered here, takes it live and delivers it to the application as the
service says:

- `splice` / `proxy-v2` / `transparent`: connect to the application's HOST:PORT on this node
  and relay both ways (cluster/l7/relay.py); the response leaves this node straight to the
  client. proxy-v2 sends a PROXY protocol v2 header with the client's address first;
  transparent connects from the client's own address and port (IP_TRANSPARENT), so an
  unmodified application sees the client as its peer.
- `descriptor`: pass the socket itself over the Unix socket `target` to an application using the
  SDK's `HandoffListener`, whose accept() returns it with the client as its peer.

A restored socket not committed within PENDING_S is closed silently. Every outcome is counted.

What a handoff message may ask is bounded: the service must be one this node knows, the socket's
local address its VIP:port, at most MAX_PENDING_ADOPTS restored sockets wait at once, a splice
target is a loopback address and a descriptor socket lies under the node's --descriptor-dir.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import struct
from collections import Counter
from collections.abc import Callable

import structlog

from cluster.l7.relay import relay
from cluster.limits import MAX_PENDING_ADOPTS
from cluster.model import Delivery, ServiceSpec
from datapath import netlink, tcprepair
from datapath.errors import DatapathError
from datapath.tcprepair import RepairError, TcpState

log = structlog.get_logger()
PENDING_S = 5.0
CONNECT_TIMEOUT_S = 2.0
PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2_header(client: tuple[str, int], vip: tuple[str, int]) -> bytes:
    """PROXY protocol v2, PROXY command, TCP over IPv4: the client and the VIP it dialled."""
    addresses = socket.inet_aton(client[0]) + socket.inet_aton(vip[0])
    addresses += struct.pack("!HH", client[1], vip[1])
    return PROXY_V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 12) + addresses


class Adopter:
    def __init__(
        self,
        node_id: str,
        services: Callable[[], dict[str, ServiceSpec]],
        descriptor_dir: str = "/run/tcphop",
    ) -> None:
        """services() gives the current service specs (from the node's latest snapshot)."""
        self.node_id, self.services = node_id, services
        self.descriptor_dir = os.path.normpath(descriptor_dir)
        self.pending: dict[str, tuple[socket.socket, str, bool]] = {}
        self.stats: Counter[str] = Counter()
        self.tasks: set[asyncio.Task[None]] = set()
        self.local_replies = False  # transparent delivery's routing is in place

    def adopt(self, service: str, state: TcpState, handoff_id: str) -> None:
        """Restore the connection in repair mode; RepairError says why not."""
        spec = self.services().get(service)
        if spec is None or state.local != (spec.vip, spec.port):
            self.stats["adopt_refused"] += 1
            raise RepairError(f"{service!r} at {state.local} is not a service of this node")
        if len(self.pending) >= MAX_PENDING_ADOPTS:
            self.stats["adopt_refused"] += 1
            raise RepairError(f"{MAX_PENDING_ADOPTS} handoffs already wait for their commit")
        try:
            sock = tcprepair.restore(state)
        except (OSError, ValueError, OverflowError) as e:
            self.stats["adopt_failed"] += 1
            raise RepairError(f"cannot restore the connection: {e}") from e
        except RepairError:
            self.stats["adopt_failed"] += 1
            raise
        self.pending[handoff_id] = (sock, service, state.peer_closed)
        asyncio.get_running_loop().call_later(PENDING_S, self._expire, handoff_id)
        self.stats["adopted"] += 1

    def _expire(self, handoff_id: str) -> None:
        found = self.pending.pop(handoff_id, None)
        if found is not None:
            found[0].close()  # still in repair mode: silent
            self.stats["expired"] += 1

    def commit(self, handoff_id: str, go: bool) -> bool:
        """Go live and deliver (in the background); False if the handoff is unknown or expired."""
        found = self.pending.pop(handoff_id, None)
        if found is None:
            return False
        sock, service, peer_closed = found
        if not go:
            sock.close()
            self.stats["aborted"] += 1
            return True
        tcprepair.release(sock, peer_closed)
        self.stats["committed"] += 1
        self.deliver(service, sock, b"")
        return True

    def deliver(self, service: str, sock: socket.socket, prefix: bytes) -> None:
        """Hand a live connection to the service's application; `prefix`: bytes already read
        from it that the application must see first (a connection that was not handed off)."""
        task = asyncio.get_running_loop().create_task(self._deliver(service, sock, prefix))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, service: str, sock: socket.socket, prefix: bytes) -> None:
        spec = self.services().get(service)
        try:
            if spec is None:
                raise OSError(f"service {service!r} is not known here")
            if spec.delivery == Delivery.DESCRIPTOR:
                await asyncio.to_thread(self._pass_descriptor, spec, sock)
                return
            await self._splice(spec, sock, prefix)
        except (OSError, DatapathError) as e:
            self.stats["delivery_failed"] += 1
            log.warning("handoff_delivery_failed", service=service, reason=str(e))
            sock.close()

    def _pass_descriptor(self, spec: ServiceSpec, sock: socket.socket) -> None:
        meta = json.dumps({"service": spec.name}).encode()  # the peer is the socket's own
        path = os.path.normpath(spec.delivery_target.replace("{node}", self.node_id))
        if not path.startswith(self.descriptor_dir + "/"):
            raise OSError(f"{path} is not under --descriptor-dir {self.descriptor_dir}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
            unix.settimeout(CONNECT_TIMEOUT_S)
            unix.connect(path)
            socket.send_fds(unix, [meta], [sock.fileno()])
        sock.close()  # the application holds its own descriptor now
        self.stats["delivered_descriptor"] += 1

    async def _splice(self, spec: ServiceSpec, sock: socket.socket, prefix: bytes) -> None:
        host, _, port = spec.delivery_target.rpartition(":")
        if not ipaddress.IPv4Address(host).is_loopback:
            raise OSError(f"delivery target {host} is not a loopback address")
        first, source = prefix, None
        if spec.delivery == Delivery.PROXY_V2:
            first = proxy_v2_header(sock.getpeername(), sock.getsockname()) + prefix
        elif spec.delivery == Delivery.TRANSPARENT:
            if not self.local_replies:
                await netlink.route_loopback_replies_locally()
                self.local_replies = True
            source = sock.getpeername()
        await relay(sock, (host, int(port)), first, CONNECT_TIMEOUT_S, self._spliced, source)

    def _spliced(self) -> None:
        self.stats["delivered_splice"] += 1
