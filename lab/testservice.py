"""A small, fast HTTP/1.1 test service for the lab, the tests and the benchmarks.

    python -m lab.testservice --bind VIP:PORT --name NODE [--handoff-socket PATH]

Keep-alive (unless `Connection: close`), TCP_NODELAY, pipelined requests answered in order:
- `GET /bytes/N`: N bytes of body (streamed with flow control, any size);
- `PUT` or `POST` with a body: the SHA-256 of the body;
- anything else: the serving node's name.
Every answer carries `X-Served-By: NODE` and `X-Client: ADDRESS:PORT` (the peer, or the source
a PROXY protocol v2 header gave). It binds with IP_FREEBIND, so it can bind the VIP before the
datapath puts the VIP on lo. With --handoff-socket it also serves connections handed over by
tcphopd (`delivery: descriptor`) through the SDK's HandoffListener.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading

import click

from cluster.sdk.handoff import HandoffListener

CHUNK = b"x" * (256 * 1024)
PROXY_V2 = b"\r\n\r\n\x00\r\nQUIT\n"
MAX_HEAD = 16 * 1024
IP_FREEBIND = 15


class HttpProtocol(asyncio.Protocol):
    def __init__(self, name: str) -> None:
        self.name = name.encode()
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.body_left = 0
        self.hasher: hashlib._Hash | None = None
        self.close_after = False
        self.to_send = 0  # body bytes of a /bytes/N answer still to write
        self.paused = False
        self.client = b"-"
        self.first = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.client = f"{peer[0]}:{peer[1]}".encode() if peer else b"-"

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.first:
            if len(self.buf) < len(PROXY_V2) and PROXY_V2.startswith(bytes(self.buf)):
                return  # maybe a PROXY header still arriving
            self.first = False
            if self.buf.startswith(PROXY_V2) and len(self.buf) >= 28 and self.buf[13] == 0x11:
                ip = socket.inet_ntoa(bytes(self.buf[16:20]))
                port = int.from_bytes(self.buf[24:26], "big")
                self.client = f"{ip}:{port}".encode()
                del self.buf[: 16 + int.from_bytes(self.buf[14:16], "big")]
        self._process()

    def _process(self) -> None:
        while self.transport is not None and not self.to_send:
            if self.body_left:
                take = min(self.body_left, len(self.buf))
                assert self.hasher is not None
                self.hasher.update(self.buf[:take])
                del self.buf[:take]
                self.body_left -= take
                if self.body_left:
                    return
                self._answer(b"200 OK", self.hasher.hexdigest().encode() + b"\n")
                self.hasher = None
                continue
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self._answer(b"431 Request Header Fields Too Large", b"", close=True)
                return
            head = bytes(self.buf[:end]).split(b"\r\n")
            del self.buf[: end + 4]
            parts = head[0].split()
            headers = {}
            for line in head[1:]:
                key, _, value = line.partition(b":")
                headers[key.strip().lower()] = value.strip()
            if len(parts) != 3:
                self._answer(b"400 Bad Request", b"", close=True)
                return
            method, path = parts[0], parts[1]
            self.close_after = headers.get(b"connection", b"").lower() == b"close"
            length = headers.get(b"content-length", b"0")
            if not length.isdigit():
                self._answer(b"400 Bad Request", b"", close=True)
                return
            if int(length) and method in (b"PUT", b"POST"):
                self.body_left, self.hasher = int(length), hashlib.sha256()
                continue
            if method == b"GET" and path.startswith(b"/bytes/") and path[7:].isdigit():
                self._head(b"200 OK", int(path[7:]), b"application/octet-stream")
                self.to_send = int(path[7:])
                self._pump()
            else:
                self._answer(b"200 OK", self.name + b"\n")

    def _head(self, status: bytes, length: int, kind: bytes = b"text/plain") -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 %s\r\nContent-Length: %d\r\nContent-Type: %s\r\nX-Served-By: %s\r\n"
            b"X-Client: %s\r\n%s\r\n"
            % (
                status,
                length,
                kind,
                self.name,
                self.client,
                b"Connection: close\r\n" if self.close_after else b"",
            )
        )

    def _answer(self, status: bytes, body: bytes, close: bool = False) -> None:
        self.close_after = self.close_after or close
        self._head(status, len(body))
        assert self.transport is not None
        self.transport.write(body)
        self._done()

    def _done(self) -> None:
        if self.close_after and self.transport is not None:
            self.transport.close()
            self.transport = None

    def _pump(self) -> None:
        while self.to_send and not self.paused and self.transport is not None:
            n = min(self.to_send, len(CHUNK))
            self.transport.write(CHUNK[:n])
            self.to_send -= n
        if not self.to_send:
            self._done()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.to_send:
            self._pump()
            self._process()  # requests pipelined behind a large answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _hand_overs(path: str, name: str, loop: asyncio.AbstractEventLoop) -> None:
    """Accept handed-off connections (blocking, in a thread) and serve each on the loop."""
    with HandoffListener(path, mode=0o666) as listener:
        while True:
            conn, _ = listener.accept()
            conn.setblocking(False)
            asyncio.run_coroutine_threadsafe(
                loop.connect_accepted_socket(lambda: HttpProtocol(name), conn), loop
            )


async def serve(host: str, port: int, name: str, handoff_socket: str | None = None) -> None:
    if handoff_socket:
        loop = asyncio.get_running_loop()
        threading.Thread(target=_hand_overs, args=(handoff_socket, name, loop), daemon=True).start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    sock.bind((host, port))
    sock.listen(1024)
    server = await asyncio.get_running_loop().create_server(lambda: HttpProtocol(name), sock=sock)
    async with server:
        await server.serve_forever()


@click.command()
@click.option("--bind", "bind", required=True, help="HOST:PORT to listen on (a VIP is fine).")
@click.option("--name", required=True, help="The node name every answer carries.")
@click.option("--handoff-socket", default=None, help="Also serve connections handed over here.")
def main(bind: str, name: str, handoff_socket: str | None) -> None:
    """Serve the lab's HTTP test service."""
    host, _, port = bind.rpartition(":")
    asyncio.run(serve(host, int(port), name, handoff_socket))


if __name__ == "__main__":
    main()
