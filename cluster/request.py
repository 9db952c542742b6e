"""The L7 scheduler's view of a request: a bounded HTTP/1.x request-head parser and the rule
match. Pure: bytes in, a decision out.

`parse_head(buf)` returns None while the head is incomplete, a `RequestHead`, or raises
`BadRequest` with the status to answer (400 malformed, 431 too large / too many headers). The
request body, and anything pipelined after the head, are not touched: they travel with the
connection to the server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from cluster.model import Match, Rule, ServiceSpec

MAX_HEAD_BYTES = 16 * 1024
MAX_HEADERS = 100
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_METHODS = {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE"}


class BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    path: str  # without the query string
    target: str  # as sent
    version: str
    headers: tuple[tuple[str, str], ...]  # names lower-cased, in order
    length: int  # bytes of the head, final CRLFCRLF included
    cookies: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    @property
    def host(self) -> str:
        """The Host header without a port, lower-cased."""
        host = (self.header("host") or "").lower()
        return host.rsplit(":", 1)[0] if not host.endswith("]") else host


def parse_head(buf: bytes) -> RequestHead | None:
    end = buf.find(b"\r\n\r\n")
    if (end < 0 and len(buf) > MAX_HEAD_BYTES) or end + 4 > MAX_HEAD_BYTES:
        raise BadRequest(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
    if end < 0:
        return None
    lines = buf[:end].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] not in _METHODS or not parts[1]:
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        raise BadRequest(400, "unsupported HTTP version")
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest(431, f"more than {MAX_HEADERS} header fields")
    try:
        target_s = target.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest(400, "malformed request target") from None
    headers = tuple(_header(line) for line in lines[1:])
    return RequestHead(
        method.decode(),
        target_s.split("?", 1)[0],
        target_s,
        version.decode(),
        headers,
        end + 4,
        _cookies(headers),
    )


def _header(line: bytes) -> tuple[str, str]:
    raw_name, sep, value = line.partition(b":")
    if not sep or not _TOKEN.match(raw_name):
        raise BadRequest(400, "malformed header field")
    return raw_name.decode("ascii").lower(), value.strip().decode("latin-1")


def _cookies(headers: tuple[tuple[str, str], ...]) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for name, value in headers:
        if name != "cookie":
            continue
        for pair in value.split(";"):
            k, sep, v = pair.strip().partition("=")
            if sep and k and k not in cookies:
                cookies[k] = v.strip('"')
    return cookies


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def matches(m: Match, head: RequestHead) -> bool:
    """Every criterion given in `m` holds for the request (AND)."""
    if m.path_prefix and not head.path.startswith(m.path_prefix):
        return False
    if m.path_regex and not _regex(m.path_regex).search(head.path):
        return False
    if m.host and head.host != m.host.lower():
        return False
    if m.header is not None:
        value = head.header(m.header.name)
        if value is None:
            return False
        if m.header.exact and value != m.header.exact:
            return False
        if m.header.regex and not _regex(m.header.regex).search(value):
            return False
    return m.cookie is None or head.cookies.get(m.cookie.name) == m.cookie.value


def select_rule(spec: ServiceSpec, head: RequestHead) -> Rule | None:
    """The first rule whose match holds; None: the service's default pool."""
    return next((r for r in spec.rules if matches(r.match, head)), None)
