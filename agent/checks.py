"""Service health checks: TCP connect or HTTP GET against the local service, with HAProxy's
rise/fall counting (a server goes down after `fall` consecutive failures and comes back after
`rise` consecutive successes; it starts down)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from cluster.model import CheckType, HealthCheck


@dataclass
class CheckState:
    """Rise/fall counting for one service on one node. Starts down."""

    rise: int
    fall: int
    up: bool = False
    streak: int = 0  # consecutive results that disagree with `up`
    latency_ms: float = 0.0
    last_error: str = ""

    def record(self, ok: bool, latency_ms: float, error: str = "") -> None:
        self.latency_ms, self.last_error = latency_ms, error
        if ok == self.up:
            self.streak = 0
            return
        self.streak += 1
        if self.streak >= (self.rise if ok else self.fall):
            self.up, self.streak = ok, 0


async def probe(check: HealthCheck, host: str, port: int) -> tuple[bool, float, str]:
    """Run one check; return (ok, latency in ms, error). A `host` starting with "/" is a Unix
    socket (an L7 service's hand-over socket): connecting is the whole check."""
    start = time.monotonic()
    target = check.port or port
    try:
        async with asyncio.timeout(check.timeout_s):
            if host.startswith("/"):
                reader, writer = await asyncio.open_unix_connection(host)
            else:
                reader, writer = await asyncio.open_connection(host, target)
            try:
                if check.type == CheckType.HTTP and not host.startswith("/"):
                    writer.write(
                        f"GET {check.path} HTTP/1.1\r\nHost: {host}\r\n"
                        "Connection: close\r\nUser-Agent: tcphop-check\r\n\r\n".encode()
                    )
                    await writer.drain()
                    status_line = await reader.readline()
                    parts = status_line.split()
                    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
                    if status != check.expect_status:
                        return (
                            False,
                            _ms(start),
                            f"HTTP status {status or '?'}, expected {check.expect_status}",
                        )
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError) as e:
        return False, _ms(start), f"{type(e).__name__}: {e}".rstrip(": ")
    return True, _ms(start), ""


def _ms(start: float) -> float:
    return (time.monotonic() - start) * 1000
