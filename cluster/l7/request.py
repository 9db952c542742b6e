"""The L7 scheduler's view of a request: a strict, bounded HTTP/1.x request-head parser and the
rule match, and the scheduler's own short answers. Pure: bytes in, a decision out.

`parse_head(buf)` returns None while the head is incomplete, a `RequestHead`, or raises
`BadRequest` with the status to answer (400 malformed, 431 too large / too many headers). The
request body, and anything pipelined after the head, are not touched: they travel with the
connection to the server, which receives the client's bytes unchanged.

Strict where routing and request smuggling depend on it (RFC 9112): one Host in HTTP/1.1 (and at
most one in 1.0); no Content-Length beside Transfer-Encoding, no two different Content-Lengths, a
Transfer-Encoding that does not end in chunked; no obsolete line folding, no whitespace before a
colon, no control characters; absolute-form targets are routed by their path and authority.
Rules see a normalized path: unreserved percent-escapes decoded, dot-segments removed, so
`/%73tatic/x` and `/a/../static/x` both meet a `/static` rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cluster.limits import MAX_HEAD_BYTES, MAX_HEADERS
from cluster.model import Match, Rule, ServiceSpec
from cluster.pattern import compile_pattern

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # CTLs but HTAB
_TARGET = re.compile(rb"^[!-~]+$")  # visible ASCII, no space or control
_HOST = re.compile(r"^([a-z0-9._~!$&'()*+,;=%-]*|\[[0-9a-f:.]+\])(:[0-9]*)?$")
_ABSOLUTE = re.compile(r"^https?://([^/?#]*)([^?#]*)(\?[^#]*)?$", re.IGNORECASE)
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_METHODS = {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"TRACE"}


class BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    path: str  # normalized, without the query string: what rules match
    target: str  # as sent
    version: str
    headers: tuple[tuple[str, str], ...]  # names lower-cased, in order
    length: int  # bytes of the head, final CRLFCRLF included
    cookies: dict[str, str] = field(default_factory=dict)
    authority: str = ""  # from an absolute-form target; it overrides Host

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    @property
    def host(self) -> str:
        """The request's host without a port, lower-cased."""
        host = (self.authority or self.header("host") or "").lower()
        return host.rsplit(":", 1)[0] if not host.endswith("]") else host


def parse_head(buf: bytes) -> RequestHead | None:
    end = buf.find(b"\r\n\r\n")
    if (end < 0 and len(buf) > MAX_HEAD_BYTES) or end + 4 > MAX_HEAD_BYTES:
        raise BadRequest(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
    if end < 0:
        return None
    lines = buf[:end].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] not in _METHODS or not _TARGET.match(parts[1]):
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        raise BadRequest(400, "unsupported HTTP version")
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest(431, f"more than {MAX_HEADERS} header fields")
    headers = tuple(_header(line) for line in lines[1:])
    _check_framing(headers, version == b"HTTP/1.1")
    target_s = target.decode("ascii")
    authority, path = _split_target(method, target_s)
    return RequestHead(
        method.decode(),
        normalize_path(path),
        target_s,
        version.decode(),
        headers,
        end + 4,
        _cookies(headers),
        authority,
    )


def _header(line: bytes) -> tuple[str, str]:
    raw_name, sep, value = line.partition(b":")
    if not sep or not _TOKEN.match(raw_name):  # also obs-fold and "name :" (RFC 9112 5.1)
        raise BadRequest(400, "malformed header field")
    if _BAD_VALUE.search(value):
        raise BadRequest(400, "control character in a header value")
    return raw_name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")


def _check_framing(headers: tuple[tuple[str, str], ...], http11: bool) -> None:
    """Host and message framing: what request smuggling and host routing rest on."""
    hosts = [v for k, v in headers if k == "host"]
    if len(hosts) > 1 or (http11 and not hosts):
        raise BadRequest(400, "an HTTP/1.1 request needs exactly one Host header")
    if hosts and not _HOST.match(hosts[0].lower()):
        raise BadRequest(400, "malformed Host header")
    lengths = {v for k, v in headers if k == "content-length"}
    codings = [
        c.strip().lower() for k, v in headers if k == "transfer-encoding" for c in v.split(",")
    ]
    if codings and lengths:
        raise BadRequest(400, "both Content-Length and Transfer-Encoding")
    if codings and codings[-1] != "chunked":
        raise BadRequest(400, "Transfer-Encoding does not end in chunked")
    if len(lengths) > 1 or any(not v.isdigit() or len(v) > 18 for v in lengths):
        raise BadRequest(400, "invalid or conflicting Content-Length")


def _split_target(method: bytes, target: str) -> tuple[str, str]:
    """(authority, path) of a request target: origin-, absolute- or asterisk-form."""
    if target.startswith("/"):
        return "", target.split("?", 1)[0]
    if target == "*" and method == b"OPTIONS":
        return "", "*"
    absolute = _ABSOLUTE.match(target)
    if absolute is None or not _HOST.match(absolute.group(1).lower()) or "@" in target:
        raise BadRequest(400, "malformed request target")
    return absolute.group(1), absolute.group(2) or "/"


def normalize_path(path: str) -> str:
    """Decode percent-escapes of unreserved characters (upper-case the others), then remove
    dot-segments (RFC 3986 6.2.2, 5.2.4). The result starts with '/' (or is '*')."""
    if path == "*":
        return path

    def unescape(m: re.Match[str]) -> str:
        byte = int(m.group(1), 16)
        return chr(byte) if byte in _UNRESERVED else f"%{m.group(1).upper()}"

    segments = _ESCAPE.sub(unescape, path).split("/")
    out: list[str] = []
    for segment in segments[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    trailing = segments[-1] in (".", "..") and len(segments) > 1
    return "/" + "/".join(out) + ("/" if trailing and out else "")


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


def matches(m: Match, head: RequestHead) -> bool:
    """Every criterion given in `m` holds for the request (AND)."""
    if m.path_prefix and not head.path.startswith(m.path_prefix):
        return False
    if m.path_regex and not compile_pattern(m.path_regex).search(head.path):
        return False
    if m.host and head.host != m.host.lower():
        return False
    if m.header is not None:
        value = head.header(m.header.name)
        if value is None:
            return False
        if m.header.exact and value != m.header.exact:
            return False
        if m.header.regex and not compile_pattern(m.header.regex).search(value):
            return False
    return m.cookie is None or head.cookies.get(m.cookie.name) == m.cookie.value


def select_rule(spec: ServiceSpec, head: RequestHead) -> Rule | None:
    """The first rule whose match holds; None: the service's default pool."""
    return next((r for r in spec.rules if matches(r.match, head)), None)


REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def answer(status: int) -> bytes:
    """The scheduler's own answer, closing the connection (it never reaches a server)."""
    body = f"{status} {REASONS[status]}\n".encode()
    return (
        f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\nContent-Type: text/plain\r\n\r\n"
    ).encode() + body
