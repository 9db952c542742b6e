"""HandoffListener: accept connections handed off to this node, as ordinary sockets.

For a service with `delivery: descriptor`, the node's tcphopd passes each adopted connection
over the Unix socket at the service's `target` (default /run/tcphop/<service>.sock). The
application needs no privilege and no other change:

    with HandoffListener("/run/tcphop/shop.sock") as listener:
        while True:
            conn, client = listener.accept()   # conn.getpeername() == client: the real client
            handle(conn)

The request that was read to route the connection is still in the socket's receive queue.

Only hand-overs from a trusted process count: the sender's SO_PEERCRED uid must be root (as
tcphopd runs) or one of `trusted_uids`; anything else, a message without a descriptor, or a
descriptor that is not a TCP socket is closed and skipped.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

_PEERCRED = getattr(socket, "SO_PEERCRED", 17)


def _socket(fd: int) -> socket.socket | None:
    """The descriptor as a socket; None (and closed) when it is not one."""
    try:
        return socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        return None


def _is_tcp(conn: socket.socket | None) -> bool:
    return (
        conn is not None
        and conn.type == socket.SOCK_STREAM
        and conn.family in (socket.AF_INET, socket.AF_INET6)
    )


class HandoffListener:
    def __init__(self, path: str, mode: int = 0o660, trusted_uids: Iterable[int] = ()) -> None:
        self.path = path
        self.trusted_uids = frozenset({0, *trusted_uids})
        self.refused = 0  # hand-overs skipped: untrusted sender, no descriptor, not TCP
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, mode)
        self.sock.listen(128)

    def accept(self) -> tuple[socket.socket, tuple[str, int]]:
        """The next handed-off connection and its client's address (blocks)."""
        while True:
            unix, _ = self.sock.accept()
            with unix:
                _, uid, _ = struct.unpack("3i", unix.getsockopt(socket.SOL_SOCKET, _PEERCRED, 12))
                try:
                    _, fds, _, _ = socket.recv_fds(unix, 4096, 1)
                except OSError:
                    fds = []
            conns = [_socket(fd) for fd in fds]
            if uid not in self.trusted_uids or len(conns) != 1 or not _is_tcp(conns[0]):
                self.refused += 1
                for conn in conns:
                    if conn is not None:
                        conn.close()
                continue
            conn = conns[0]
            assert conn is not None
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = conn.getpeername()  # a restored socket's peer is the real client
            return conn, (str(peer[0]), int(peer[1]))

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> HandoffListener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
