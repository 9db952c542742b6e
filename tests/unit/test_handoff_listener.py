"""HandoffListener trusts a handed-over socket only from root (tcphopd) or a configured uid."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from cluster.sdk.handoff import HandoffListener

NOBODY = 65534


def hand_over(path: str, as_uid: int | None, fd: int) -> None:
    """Pass `fd` over the Unix socket at `path` from a child process running as `as_uid`."""
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            if as_uid is not None:
                os.setgid(as_uid)
                os.setuid(as_uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
                unix.connect(path)
                socket.send_fds(unix, [b'{"peer": ["6.6.6.6", 1]}'], [fd])
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_only_trusted_senders_and_tcp_sockets_are_accepted() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to send as another uid")
    directory = Path(tempfile.mkdtemp(prefix="tcphop-hop-"))  # reachable by uid nobody
    directory.chmod(0o755)
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    with HandoffListener(str(directory / "hop.sock"), mode=0o666) as listener:
        got: list[tuple[socket.socket, tuple[str, int]]] = []
        accepting = threading.Thread(target=lambda: got.append(listener.accept()), daemon=True)
        accepting.start()
        hand_over(listener.path, NOBODY, conn.fileno())  # untrusted uid: skipped
        with open(os.devnull) as not_tcp:
            hand_over(listener.path, None, not_tcp.fileno())  # root, but not a TCP socket
        hand_over(listener.path, None, conn.fileno())  # root: accepted
        accepting.join(10)
        assert listener.refused == 2
        [(adopted, peer)] = got
        assert peer == client.getsockname()  # the socket's own peer, not the metadata's claim
        adopted.close()
    for s in (conn, client, server):
        s.close()
    directory.rmdir()
