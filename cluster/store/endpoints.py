"""etcd endpoint lists as operators write them (`https://h:p,https://h2:p2`), checked."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit


def parse_endpoints(urls: str | Sequence[str]) -> tuple[str, ...]:
    """`http://h:p,http://h2:p2` (or a list) -> ("h:p", "h2:p2"); ValueError when malformed
    or when http and https are mixed."""
    return parse_endpoints_and_scheme(urls)[0]


def endpoints_scheme(urls: str | Sequence[str]) -> str:
    """ "https" or "http": how the endpoints are to be reached."""
    return parse_endpoints_and_scheme(urls)[1]


def parse_endpoints_and_scheme(urls: str | Sequence[str]) -> tuple[tuple[str, ...], str]:
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    targets, schemes = [], set()
    for item in (i.strip() for i in items):
        parts = urlsplit(item if "://" in item else f"http://{item}")
        try:
            port = parts.port
        except ValueError:  # not a number
            port = None
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or not port
            or parts.path not in ("", "/")
        ):
            raise ValueError(f"etcd endpoint {item!r} is not of the form https://host:port")
        targets.append(f"{parts.hostname}:{port}")
        schemes.add(parts.scheme)
    if not targets:
        raise ValueError("no etcd endpoint given")
    if len(schemes) > 1:
        raise ValueError("etcd endpoints mix http and https")
    return tuple(targets), schemes.pop()
