"""The L7 listener under descriptor exhaustion: real sockets on loopback, a real EMFILE."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys

from cluster.l7.handoff import L7Handoff

CLIENT = """
import socket, sys, time
time.sleep(float(sys.argv[2]))
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
c.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
print(c.recv(100).decode().splitlines()[0])
"""


async def test_out_of_descriptors_the_listener_backs_off_and_accepts_again() -> None:
    handoff = L7Handoff("n1", None, None)  # type: ignore[arg-type]  # no service: 503
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(port), "0.3"], stdout=subprocess.PIPE, text=True
    )
    accepting = asyncio.create_task(handoff._accept(listener))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hogs: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 4096), hard))
        with contextlib.suppress(OSError):
            while True:
                hogs.append(os.open(os.devnull, os.O_RDONLY))
        for _ in range(100):  # the client connects; accept() fails with EMFILE, again and again
            await asyncio.sleep(0.05)
            if handoff.stats["accept_errors"] >= 2:
                break
        assert handoff.stats["accept_errors"] >= 2
        assert not accepting.done()  # the listener lives on
    finally:
        for fd in hogs:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    out, _ = await asyncio.to_thread(client.communicate, timeout=20)
    assert out.strip() == "HTTP/1.1 503 Service Unavailable"  # accepted once descriptors freed
    accepting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await accepting
