"""HopListener: accept connections that hopped to this node, as ordinary sockets.

For a service with `delivery: descriptor`, the node's tcphopd passes each adopted connection
over the Unix socket at the service's `target` (default /run/tcphop/<service>.sock). The
application needs no privilege and no other change:

    with HopListener("/run/tcphop/shop.sock") as listener:
        while True:
            conn, client = listener.accept()   # conn.getpeername() == client: the real client
            handle(conn)

The request that was read to route the connection is still in the socket's receive queue.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from types import TracebackType


class HopListener:
    def __init__(self, path: str, mode: int = 0o660) -> None:
        self.path = path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, mode)
        self.sock.listen(128)

    def accept(self) -> tuple[socket.socket, tuple[str, int]]:
        """The next hopped connection and its client's address (blocks)."""
        while True:
            unix, _ = self.sock.accept()
            with unix:
                meta, fds, _, _ = socket.recv_fds(unix, 4096, 1)
            if not fds:
                continue  # not a hand-over: ignore
            conn = socket.socket(fileno=fds[0])
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = json.loads(meta or b"{}").get("peer") or conn.getpeername()
            return conn, (str(peer[0]), int(peer[1]))

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> HopListener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
