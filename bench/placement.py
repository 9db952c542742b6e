"""Placement benchmark: decisions per second per policy, and Maglev's table properties.

    .venv/bin/python bench/placement.py [--servers 100] [--decisions 200000]

Decision rates are for one core, with `random.choice` over the same servers as the baseline
measured in the same run. Maglev: build time for M = 65,537; the fraction of keys that move when
one of N servers leaves (goal <= 1/N + 1 %); the largest gap between a server's share of slots
and its weight share (goal <= 1 % of that share), with equal and with mixed weights.
"""

from __future__ import annotations

import argparse
import collections
import random
import statistics
import time
from collections.abc import Callable
from functools import partial

from cluster.model import Policy
from cluster.placement import Candidate, NodeLoad, Placer
from datapath import maglev


def rate(call: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--decisions", type=int, default=200_000)
    args = parser.parse_args()
    rng = random.Random(42)
    n, count = args.servers, args.decisions
    cands = [Candidate(f"n{i:03d}", rng.choice((50, 100, 200))) for i in range(n)]
    loads = {
        c.node_id: NodeLoad(
            c.node_id, rng.random(), rng.randrange(500), rng.random() * 20, frozenset({"web"}), 0.0
        )
        for c in cands
    }
    placer = Placer(random.Random(1))
    clients = [rng.randbytes(4) for _ in range(4096)]
    baseline = rate(lambda: rng.choice(cands), count)
    rows = [("random.choice (baseline)", baseline)]
    for policy in Policy:
        rows.append((policy.value, rate(partial(placer.pick, "s", policy, cands, loads), count)))
    it = iter(range(10**12))
    rows.append(
        (
            "source-ip persistence",
            rate(
                lambda: placer.pick(
                    "s", Policy.LEAST_LOADED, cands, loads, persist=clients[next(it) % 4096]
                ),
                count,
            ),
        )
    )
    print(
        f"Placement over {n} servers, {count} decisions each, one core, "
        f"{time.strftime('%Y-%m-%d')}\n"
    )
    print("| policy | decisions/s | x baseline |\n|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r:,.0f} | {r / baseline:.2f} |")
    maglev_properties(cands, rng)


def maglev_properties(cands: list[Candidate], rng: random.Random) -> None:
    """Build time, disruption when a server leaves, and balance, for the kernel's table size."""
    n = len(cands)
    equal = {c.node_id: 100 for c in cands}
    builds = []
    for _ in range(5):
        start = time.perf_counter()
        table = maglev.build(equal)
        builds.append(time.perf_counter() - start)
    moved = []
    for gone in rng.sample(sorted(equal), 10):
        after = maglev.build({k: w for k, w in equal.items() if k != gone})
        moved.append(sum(1 for a, b in zip(table, after, strict=True) if a != b) / len(table))
    mixed = {c.node_id: c.weight for c in cands}

    def spread(weights: dict[str, int]) -> float:
        counts = collections.Counter(maglev.build(weights))
        total = sum(weights.values())
        return max(
            abs(counts[k] / maglev.DEFAULT_SIZE - w / total) / (w / total)
            for k, w in weights.items()
        )

    print(f"\nMaglev, M = {maglev.DEFAULT_SIZE}, N = {n}\n")
    print("| what | value | goal |\n|---|---|---|")
    print(f"| table build (median of 5) | {statistics.median(builds) * 1000:.0f} ms | |")
    print(
        f"| keys moved when one server leaves (worst of 10) | {max(moved):.2%} | "
        f"<= {1 / n + 0.01:.2%} |"
    )
    print(
        f"| share gap, equal weights (worst server) | {spread(equal):.2%} of its share | <= 1 % |"
    )
    print(
        f"| share gap, weights 50/100/200 (worst server) | {spread(mixed):.2%} of its share "
        "| <= 1 % |"
    )


if __name__ == "__main__":
    main()
