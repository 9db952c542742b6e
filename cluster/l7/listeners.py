"""The leader's L7 listeners: one accept loop per L7 service's VIP:port while this node leads.

A listener no longer wanted accepts LISTEN_LINGER_S longer (the XDP tables already drop new
SYNs; handshakes under way complete meanwhile; leading again in time keeps it), then its
backlog is served and it closes. Out of descriptors or buffers an accept loop backs off and
goes on; one that dies of any other error is replaced at the next update. A bind that fails
with EADDRINUSE logs every socket on the port (what holds it).
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections import Counter
from collections.abc import Callable

import structlog

from cluster.limits import ACCEPT_BACKOFF_S
from datapath import netlink

log = structlog.get_logger()
IP_FREEBIND = 15
LISTEN_LINGER_S = 0.2  # a listener no longer wanted accepts this long more
_ACCEPT_RETRY = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

Key = tuple[str, int]  # VIP, port
OnAccept = Callable[[socket.socket, tuple[str, int]], None]


class Listeners:
    def __init__(self, on_accept: OnAccept, stats: Counter[str]) -> None:
        self.on_accept, self.stats = on_accept, stats  # stats: accept_errors, backlog_served
        # VIP:port -> accept loop: wanted now (wanted), and every running one (accepting: a
        # listener no longer wanted runs LISTEN_LINGER_S longer, `closing` holds its timer).
        self.wanted: dict[Key, asyncio.Task[None]] = {}
        self.accepting: dict[Key, asyncio.Task[None]] = {}
        self.closing: dict[Key, asyncio.TimerHandle] = {}
        self.sockets: dict[Key, socket.socket] = {}

    async def update(self, wanted: set[Key]) -> None:
        """Listen on exactly `wanted` (after the lingering of those no longer wanted)."""
        loop = asyncio.get_running_loop()
        for key in [k for k, task in self.accepting.items() if task.done()]:
            self._forget(key)  # its accept loop died: listen anew where wanted
        for key in [k for k in self.wanted if k not in wanted]:
            self.closing[key] = loop.call_later(LISTEN_LINGER_S, self._stop, key)
            self.wanted.pop(key)
        for key in wanted & self.closing.keys():  # wanted again: the same one goes on
            self.closing.pop(key).cancel()
            self.wanted[key] = self.accepting[key]
        for key in wanted - self.wanted.keys():
            try:
                sock = _listen(*key)
            except OSError as e:
                holders = await _holders(*key) if e.errno == errno.EADDRINUSE else {}
                log.warning("l7_listen_failed", vip=key[0], port=key[1], reason=str(e),
                            sockets_on_port=holders)  # fmt: skip
                continue
            self.sockets[key] = sock
            self.accepting[key] = self.wanted[key] = loop.create_task(self._accept(sock))
            log.info("l7_listener_started", vip=key[0], port=key[1])

    def _stop(self, key: Key) -> None:
        """Stop a listener LISTEN_LINGER_S after it was last wanted, serving its backlog."""
        self.closing.pop(key, None)
        self.accepting.pop(key).cancel()  # it closes the socket when it runs next
        drained = self.drain(self.sockets.pop(key))
        log.info("l7_listener_stopped", vip=key[0], port=key[1], backlog_served=drained)

    def _forget(self, key: Key) -> None:
        if (timer := self.closing.pop(key, None)) is not None:
            timer.cancel()
        task = self.accepting.pop(key)
        self.wanted.pop(key, None)
        self.sockets.pop(key, None)  # its loop closed it
        reason = "cancelled" if task.cancelled() else repr(task.exception())
        log.warning("l7_listener_died", vip=key[0], port=key[1], reason=reason)

    def close(self) -> None:
        for timer in self.closing.values():
            timer.cancel()
        for task in self.accepting.values():
            task.cancel()
        self.wanted.clear()
        self.closing.clear()
        self.accepting.clear()
        self.sockets.clear()

    async def _accept(self, listener: socket.socket) -> None:
        """Accept for ever. Out of descriptors or buffers (EMFILE, ENFILE, ENOBUFS, ENOMEM) is
        a passing state: back off (doubling, capped) and accept again, never give up."""
        loop = asyncio.get_running_loop()
        backoff = ACCEPT_BACKOFF_S[0]
        try:
            while True:
                try:
                    conn, client = await loop.sock_accept(listener)
                except OSError as e:
                    if e.errno not in _ACCEPT_RETRY:
                        raise
                    self.stats["accept_errors"] += 1
                    log.warning("l7_accept_failed", reason=str(e), retry_in_s=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(2 * backoff, ACCEPT_BACKOFF_S[1])
                    continue
                backoff = ACCEPT_BACKOFF_S[0]
                self.on_accept(conn, client)
        finally:
            listener.close()

    def drain(self, listener: socket.socket) -> int:
        """Serve what a stopping listener's backlog holds: connections the kernel completed
        but nobody accepted yet would be reset by its close (the tables already drop new
        SYNs, which the clients retry)."""
        drained = 0
        while True:
            try:
                conn, client = listener.accept()
            except OSError:  # BlockingIOError: the backlog is empty
                return drained
            drained += 1
            self.stats["backlog_served"] += 1
            self.on_accept(conn, client)


async def _holders(vip: str, port: int) -> dict[str, int] | str:
    """Who holds VIP:port (a diagnosis for the log): off the event loop, since pyroute2's
    synchronous sockets run an event loop of their own; never an error of its own."""
    try:
        return await asyncio.to_thread(netlink.sockets_on, vip, port)
    except Exception as e:  # noqa: BLE001 - a log line's detail must not stop the leader
        return f"unknown ({type(e).__name__}: {e})"


def _listen(vip: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        sock.bind((vip, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
