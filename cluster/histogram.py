"""A latency histogram with fixed buckets: what the daemon records once, and both its gRPC
views (p50/p99) and its Prometheus metrics read. Memory and recording cost do not grow with
traffic."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# Upper bounds in seconds: 100 µs to 10 s, about three per decade (Prometheus `le` buckets).
BUCKETS_S = (
    0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip


@dataclass(slots=True)
class Histogram:
    bounds: tuple[float, ...] = BUCKETS_S
    counts: list[int] = field(default_factory=list)  # per bucket, the last is +Inf
    sum_s: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    @property
    def count(self) -> int:
        return sum(self.counts)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum_s += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, observations <= le) per bucket, +Inf last: Prometheus' exposition."""
        out, total = [], 0
        for bound, n in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out

    def quantile_ms(self, q: float) -> float:
        """The q-quantile in ms, interpolated within its bucket (as PromQL's
        histogram_quantile); 0 without observations, the top bound beyond it."""
        total = self.count
        if not total:
            return 0.0
        rank, below = q * total, 0
        for i, n in enumerate(self.counts):
            if n and below + n >= rank:
                if i == len(self.bounds):
                    return 1000 * self.bounds[-1]
                low = self.bounds[i - 1] if i else 0.0
                return 1000 * (low + (self.bounds[i] - low) * (rank - below) / n)
            below += n
        return 1000 * self.bounds[-1]
