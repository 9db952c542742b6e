"""Placement: which server gets a new connection. Pure: no I/O; time comes in as arguments.

Eligible servers are those in the service's (or matched rule's) pool, serving `enabled` with a
weight above 0, whose last load report is fresh (at most `stale_after_s` old) and whose health
check for the service is up. Among them:

- `least-loaded`: power of two choices (Mitzenmacher): two distinct random candidates, the one
  with the lower score wins, so a burst does not herd onto the single least-loaded server.
  score = cpu + connections / weight x 100 / CONNECTIONS_AT_FULL + check_latency_ms /
  LATENCY_AT_FULL_MS: each term is about 1 at "busy" (100 % CPU, CONNECTIONS_AT_FULL
  connections at weight 100, LATENCY_AT_FULL_MS check latency).
- `round-robin`: the eligible servers in turn.
- `weighted`: smooth weighted round-robin (nginx): proportional to weight, evenly spread.
- `maglev`: the weighted Maglev table over the eligible servers, keyed by the client.
- Persistence (`source-ip`, `cookie:<name>`): a key is given, and the same key maps to the same
  server for as long as the eligible set does not change (Maglev over the eligible servers).

For the kernel datapath, which only has Maglev, least-loaded becomes Maglev weights derived from
load: `weight x (1.1 - min(cpu, 1))` scaled to 1..1000, recomputed only when some server's
weight moved by more than HYSTERESIS (relative), so tables do not churn on noise.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cluster.model import Designation, Policy, Pool, Serving
from datapath import maglev

CONNECTIONS_AT_FULL = 1000
LATENCY_AT_FULL_MS = 100.0
HYSTERESIS = 0.2
TABLE_SIZE = 65_537
MAX_CYCLE = 4096


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """The last report of a node's agent, as the leader received it."""

    node_id: str
    cpu: float  # utilisation, 0..1 (all cores)
    connections: int  # established connections on the node's VIPs
    check_latency_ms: float
    checks_up: frozenset[str]  # services whose health check is up on the node
    received_at: float  # the leader's monotonic clock


@dataclass(frozen=True, slots=True)
class Candidate:
    node_id: str
    weight: int


def eligible(
    pool: Pool,
    service: str,
    designations: Mapping[str, Designation],
    loads: Mapping[str, NodeLoad],
    now: float,
    stale_after_s: float,
) -> list[Candidate]:
    """Servers that may get a new connection for `service`, sorted by node id."""
    members = designations.keys() if pool.all else pool.nodes
    out = []
    for node in sorted(members):
        d, load = designations.get(node), loads.get(node)
        if (
            d is None
            or d.serving != Serving.ENABLED
            or d.weight <= 0
            or load is None
            or now - load.received_at > stale_after_s
            or service not in load.checks_up
        ):
            continue
        out.append(Candidate(node, d.weight))
    return out


def score(load: NodeLoad, weight: int, placed: int = 0) -> float:
    """Lower is better; `placed` counts connections placed since the node's last report."""
    return (
        load.cpu
        + (load.connections + placed) * 100 / (max(weight, 1) * CONNECTIONS_AT_FULL)
        + load.check_latency_ms / LATENCY_AT_FULL_MS
    )


@dataclass
class Placer:
    """Placement state per service or rule (round-robin positions, Maglev tables)."""

    rng: random.Random = field(default_factory=random.Random)
    _turn: dict[str, int] = field(default_factory=dict)
    _cycles: dict[str, tuple[tuple[Candidate, ...], list[str]]] = field(default_factory=dict)
    _tables: dict[str, tuple[tuple[Candidate, ...], list[str]]] = field(default_factory=dict)
    # Connections placed on a node since its last load report: counted as its own, so a burst
    # between two reports spreads instead of piling onto the node that looked idlest.
    pending: dict[str, int] = field(default_factory=dict)

    def reported(self, node_id: str) -> None:
        """A fresh report includes what was placed before it."""
        self.pending.pop(node_id, None)

    def pick(
        self,
        key: str,
        policy: Policy,
        candidates: Sequence[Candidate],
        loads: Mapping[str, NodeLoad],
        persist: bytes | None = None,
    ) -> str | None:
        """The server for one new connection; None when no server is eligible.

        key names the service or rule whose state to use; persist is the client address or
        cookie value when the service has persistence.
        """
        if not candidates:
            return None
        if persist is not None or policy == Policy.MAGLEV:
            client = persist if persist is not None else self.rng.randbytes(8)
            return maglev.lookup(self._table(key, candidates), client)
        if policy == Policy.ROUND_ROBIN:
            turn = self._turn.get(key, 0)
            self._turn[key] = turn + 1
            return candidates[turn % len(candidates)].node_id
        if policy == Policy.WEIGHTED:
            return self._smooth_weighted(key, candidates)
        return self._two_choices(candidates, loads)

    def _two_choices(self, candidates: Sequence[Candidate], loads: Mapping[str, NodeLoad]) -> str:
        if len(candidates) == 1:
            chosen = candidates[0].node_id
        else:
            a, b = self.rng.sample(list(candidates), 2)
            chosen = min(
                (a, b), key=lambda c: (self._score(loads[c.node_id], c.weight), c.node_id)
            ).node_id
        self.pending[chosen] = self.pending.get(chosen, 0) + 1
        return chosen

    def _score(self, load: NodeLoad, weight: int) -> float:
        return score(load, weight, self.pending.get(load.node_id, 0))

    def _smooth_weighted(self, key: str, candidates: Sequence[Candidate]) -> str:
        """nginx's smooth weighted round-robin, precomputed as one cycle per candidate set."""
        cached = self._cycles.get(key)
        if cached is None or cached[0] != tuple(candidates):
            cached = (tuple(candidates), _smooth_cycle(candidates))
            self._cycles[key] = cached
            self._turn[key] = 0
        turn = self._turn.get(key, 0)
        self._turn[key] = turn + 1
        return cached[1][turn % len(cached[1])]

    def _table(self, key: str, candidates: Sequence[Candidate]) -> list[str]:
        cached = self._tables.get(key)
        if cached is None or cached[0] != tuple(candidates):
            table = maglev.build({c.node_id: c.weight for c in candidates}, TABLE_SIZE)
            self._tables[key] = cached = (tuple(candidates), table)
        return cached[1]


def _smooth_cycle(candidates: Sequence[Candidate]) -> list[str]:
    """One full cycle of smooth weighted round-robin: each server weight/gcd times, spread out.

    Weights are reduced by their gcd and, when the cycle would exceed MAX_CYCLE picks, scaled
    down (keeping every server at least 1), so the cycle stays small.
    """
    weights = [c.weight for c in candidates]
    divisor = math.gcd(*weights)
    weights = [w // divisor for w in weights]
    if sum(weights) > MAX_CYCLE:
        scale = MAX_CYCLE / sum(weights)
        weights = [max(1, round(w * scale)) for w in weights]
    total, current, cycle = sum(weights), [0] * len(weights), []
    for _ in range(total):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=lambda i: (current[i], -i))
        current[best] -= total
        cycle.append(candidates[best].node_id)
    return cycle


def maglev_weights(
    candidates: Sequence[Candidate], loads: Mapping[str, NodeLoad], previous: Mapping[str, int]
) -> dict[str, int]:
    """Kernel-datapath weights from load, with hysteresis (see the module docstring).

    Returns `previous` unchanged (same keys and values) unless the set of servers changed or
    some server's weight moved by more than HYSTERESIS.
    """
    raw = {c.node_id: c.weight * (1.1 - min(loads[c.node_id].cpu, 1.0)) for c in candidates}
    top = max(raw.values(), default=0.0)
    if top <= 0:
        return {}
    fresh = {n: max(1, round(1000 * w / top)) for n, w in raw.items()}
    if set(fresh) == set(previous) and all(
        abs(fresh[n] - previous[n]) <= HYSTERESIS * max(previous[n], 1) for n in fresh
    ):
        return dict(previous)
    return fresh
