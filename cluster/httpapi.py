"""The node's HTTP listener (--http-listen, port 7702 by default): Prometheus metrics and
Patroni-style health endpoints, for scrapers, load-balancer health checks and orchestrators.

    GET /metrics   the exposition text (cluster/metrics.py)
    GET /healthz   200 when registered and etcd is readable, else 503
    GET /leader    200 only on the node whose leader lease is surely valid, else 503
    GET /ready     200 once the node serves its VIPs, else 503

Health endpoints answer a JSON document with the reason (cluster/health.py). HEAD works too.
With TLS (the default) the listener speaks HTTPS with the node's certificate; a client
certificate is checked when one is offered but not required: these endpoints are read-only and
name no client (--http-plaintext asks for plain HTTP by name). Hostile clients are bounded: a
request head of at most MAX_HEAD_BYTES read within HEAD_TIMEOUT_S, at most MAX_CLIENTS at once,
one request per connection.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST

from cluster.health import NodeHealth
from cluster.limits import HTTP_HEAD_TIMEOUT_S, HTTP_MAX_CLIENTS, HTTP_MAX_HEAD_BYTES
from cluster.tls import TlsFiles

log = structlog.get_logger()
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 503: "Service Unavailable"}  # fmt: skip


def server_context(tls: TlsFiles) -> ssl.SSLContext:
    ctx = tls.server_context()
    ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


class HttpApi:
    def __init__(self, health: NodeHealth, metrics: Callable[[], Awaitable[bytes]]) -> None:
        self.health, self.metrics = health, metrics
        self.clients = 0

    async def serve(self, listen: str, tls: TlsFiles | None) -> asyncio.Server:
        host, _, port = listen.rpartition(":")
        ctx = server_context(tls) if tls is not None else None
        return await asyncio.start_server(
            self._client,
            host.strip("[]"),
            int(port),
            limit=HTTP_MAX_HEAD_BYTES,
            ssl=ctx,
            ssl_handshake_timeout=HTTP_HEAD_TIMEOUT_S if ctx else None,
        )

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.clients >= HTTP_MAX_CLIENTS:
            writer.close()
            return
        self.clients += 1
        try:
            async with asyncio.timeout(HTTP_HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            answer = await self._answer(head)
        except TimeoutError:
            answer = 408, "text/plain", b"request head too slow\n", False
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, ValueError):
            answer = 400, "text/plain", b"bad or too large request head\n", False
        except (ConnectionError, ssl.SSLError):
            answer = None
        try:
            if answer is not None:
                status, ctype, body, head_only = answer
                writer.write(
                    f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + (b"" if head_only else body)
                )
                async with asyncio.timeout(HTTP_HEAD_TIMEOUT_S):
                    await writer.drain()
        except (ConnectionError, TimeoutError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self.clients -= 1

    async def _answer(self, head: bytes) -> tuple[int, str, bytes, bool]:
        """(status, content type, body, HEAD) for one request head."""
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"only GET and HEAD\n", False
        path = target.split("?", 1)[0]
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, await self.metrics(), method == "HEAD"
        doc = self.health.document()
        ok = {"/healthz": doc["healthy"], "/leader": doc["leader"], "/ready": doc["ready"]}
        if path not in ok:
            return 404, "text/plain", b"try /metrics, /healthz, /leader or /ready\n", False
        body = (json.dumps(doc, sort_keys=True) + "\n").encode()
        return 200 if ok[path] else 503, "application/json", body, method == "HEAD"
