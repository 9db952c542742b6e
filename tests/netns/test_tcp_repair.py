"""What a TCP_REPAIR round leaves on the VIP's port: real sockets on loopback (root, as every
test of this directory; CI requires it through the netns capability).

Found by the chaos run: a deposed leader thawed the connections no node would take, served them
itself and closed them; their TIME_WAITs kept its next L7 listener from binding for 56 s.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from cluster.store.embedded import free_port
from datapath import tcprepair
from datapath.netlink import sockets_on
from tests.conftest import need

HOST = "127.0.0.1"


def _listen(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the L7 listener does
    sock.bind((HOST, port))
    sock.listen(8)
    return sock


@contextmanager
def _accepted() -> Iterator[tuple[socket.socket, socket.socket, socket.socket, int]]:
    """(listener, client, accepted, port): one connection, the request read."""
    need("netns", os.geteuid() == 0, "TCP_REPAIR needs CAP_NET_ADMIN: run the tests as root")
    port = free_port()
    with _listen(port) as listener, socket.socket() as client:
        # Loopback's MSS (65,483) is above what TCP_MAXSEG takes back (32,767); a NIC's is not.
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
        client.settimeout(5)
        client.connect((HOST, port))
        client.sendall(b"GET")
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.recv(3) == b"GET"
            yield listener, client, accepted, port


def _read_to_end(client: socket.socket) -> bytes:
    out = b""
    while chunk := client.recv(100):
        out += chunk
    return out


def test_a_thawed_connection_closed_first_leaves_the_port_to_the_next_listener() -> None:
    """Leaving repair mode clears SO_REUSEADDR; thaw sets it again (without: EADDRINUSE)."""
    with _accepted() as (listener, client, accepted, port):
        tcprepair.freeze(accepted)
        tcprepair.snapshot(accepted, b"GET")
        tcprepair.thaw(accepted)  # no node took it: the scheduler answers itself
        accepted.sendall(b"503")
        accepted.close()  # closes first: its side goes to TIME_WAIT
        assert _read_to_end(client) == b"503"
        listener.close()
    assert sockets_on(HOST, port).get("TIME_WAIT") == 1
    with _listen(port):
        pass


def test_a_connection_is_restored_beside_a_listener_on_its_own_address() -> None:
    """A node whose listener on VIP:port still lingers adopts connections there (without the
    repair mode's forced reuse: EADDRINUSE), and the restored socket serves the client."""
    with _accepted() as (_, client, accepted, port):
        tcprepair.freeze(accepted)
        state = tcprepair.snapshot(accepted, b"GET")
        accepted.close()  # in repair mode: silent
        restored = tcprepair.restore(state)
        with restored:
            tcprepair.release(restored, state.peer_closed)
            assert restored.recv(3) == b"GET"
            restored.sendall(b"200")
        assert _read_to_end(client) == b"200"
    assert sockets_on(HOST, port).get("TIME_WAIT") == 1
    with _listen(port):
        pass
