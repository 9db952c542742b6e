"""The L7 listener under descriptor exhaustion: real sockets on loopback, a real EMFILE."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import socket
import subprocess
import sys

import pytest

from cluster.l7.handoff import L7Handoff
from cluster.l7.listeners import LISTEN_LINGER_S
from cluster.model import Mode, ServiceSpec
from cluster.snapshot import Snapshot

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
    accepting = asyncio.create_task(handoff.listening._accept(listener))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hogs: list[int] = []
    # No collection while the descriptors are hogged: garbage of earlier tests holding one (a
    # socket, a pipe) freed it mid-window once, accept() took it, and EMFILE came only once.
    gc.collect()
    gc.disable()
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
        for fd in hogs:
            os.close(fd)
        hogs.clear()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        out, _ = await asyncio.to_thread(client.communicate, timeout=20)
        assert out.strip() == "HTTP/1.1 503 Service Unavailable"  # accepted once freed
    finally:
        for fd in hogs:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        gc.enable()
        client.kill()  # a failed assertion must not leave it to the next test's finalizers
        client.communicate()
        accepting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await accepting


async def test_a_stopping_listener_answers_its_backlog_instead_of_resetting_it() -> None:
    """Closing a listener resets the connections the kernel completed but nobody accepted; a
    leader stepping down drains them first (here they get the 503 of an unknown service; in the
    lab, tests/netns/test_chaos.py, the old leader serves them)."""
    handoff = L7Handoff("n1", None, None)  # type: ignore[arg-type]  # no service: 503
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    clients = [socket.create_connection(listener.getsockname(), timeout=5) for _ in range(3)]
    for c in clients:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert handoff.listening.drain(listener) == 3  # nobody had accepted them
    listener.close()
    for c in clients:
        assert (await asyncio.to_thread(c.recv, 100)).startswith(b"HTTP/1.1 503 ")
        c.close()
    await asyncio.gather(*handoff.tasks)  # their lingering closes
    assert handoff.stats["backlog_served"] == 3


def with_service(port: int) -> Snapshot:
    spec = ServiceSpec("shop", "127.0.0.1", port, mode=Mode.L7)
    return Snapshot(10, {}, {}, {}, frozenset(), {"shop": spec}, {}, None, 0, 0, 3, 7, {}, None)


async def test_a_listener_no_longer_wanted_lingers_and_is_kept_if_wanted_again() -> None:
    """Stepping down stops the listener LISTEN_LINGER_S later (handshakes under way complete
    meanwhile); leading again within that time keeps the same listener."""
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    handoff = L7Handoff("n1", None, None)  # type: ignore[arg-type]
    snap = with_service(port)
    await handoff.update(snap, True)
    first = handoff.listening.wanted[("127.0.0.1", port)]
    await handoff.update(snap, False)
    assert not handoff.listening.wanted and not first.done()
    socket.create_connection(("127.0.0.1", port), timeout=1).close()  # still listening
    await handoff.update(snap, True)  # leading again in time: the same listener
    assert handoff.listening.wanted[("127.0.0.1", port)] is first and not handoff.listening.closing
    await handoff.update(snap, False)
    await asyncio.sleep(LISTEN_LINGER_S + 0.1)
    assert first.done() and not handoff.listening.accepting and not handoff.listening.sockets
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    await handoff.close()


async def test_a_listener_whose_accept_loop_died_is_listened_anew() -> None:
    """An accept loop that ends on an error it cannot wait out (here: its socket shut down
    under it, EINVAL) is replaced at the next update; before, the dead loop stayed "wanted"
    and the VIP:port was never listened on again while this node led."""
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    handoff = L7Handoff("n1", None, None)  # type: ignore[arg-type]
    snap, key = with_service(port), ("127.0.0.1", port)
    await handoff.update(snap, True)
    first = handoff.listening.wanted[key]
    handoff.listening.sockets[key].shutdown(socket.SHUT_RDWR)
    with pytest.raises(OSError, match="Invalid argument"):
        await asyncio.wait_for(first, 5)
    await handoff.update(snap, True)
    assert handoff.listening.wanted[key] is not first
    socket.create_connection(key, timeout=1).close()  # listening again
    await asyncio.sleep(0.1)  # the new loop accepts it; its head read ends at the close
    await asyncio.gather(*handoff.tasks)
    await handoff.close()
