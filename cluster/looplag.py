"""How late the daemon's event loop runs: a timer every INTERVAL_S, and how much later than
asked it fired. Everything the daemon does shares this loop (election, API, L7 listeners), so a
stall anywhere — a slow rule match, a large synchronous read — shows here first."""

from __future__ import annotations

import asyncio
import collections
import time

import structlog

log = structlog.get_logger()
INTERVAL_S = 0.05
STALL_LOG_MS = 200.0  # a lag this long is logged: it can cost a leader its heartbeat window
WINDOW_S = 10.0


class LoopLag:
    def __init__(self) -> None:
        self.last_ms = 0.0
        self.samples: collections.deque[tuple[float, float]] = collections.deque()

    @property
    def max_ms(self) -> float:
        """The largest lag in the last WINDOW_S."""
        return max((lag for _, lag in self.samples), default=0.0)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            asked = time.monotonic()
            await asyncio.sleep(INTERVAL_S)
            now = time.monotonic()
            self.last_ms = max(0.0, (now - asked - INTERVAL_S) * 1000)
            self.samples.append((now, self.last_ms))
            if self.last_ms > STALL_LOG_MS:
                log.warning("event_loop_stalled", lag_ms=round(self.last_ms))
            while self.samples and self.samples[0][0] < now - WINDOW_S:
                self.samples.popleft()
