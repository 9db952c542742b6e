"""The leader's scheduler: live load from the agents, in memory, and placement from it.

Agents stream reports (`Telemetry.Report`); only the leader accepts them. A node whose last
report is older than STALE_INTERVALS of its own report interval counts as unknown and gets no
new connections; a node that has not reported to this leader yet is judged by its health summary
in etcd. Placement reads services and designations from one etcd snapshot per call.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from cluster.errors import NotFound, NotLeader, ValidationError
from cluster.model import LoadReport, Rule, ServiceSpec
from cluster.placement import Candidate, NodeLoad, Placer, eligible, maglev_weights, score
from cluster.snapshot import Snapshot
from cluster.state import ClusterState
from cluster.validation import report_problems

STALE_INTERVALS = 3
SUMMARY_STALE_S = 6.0
REGISTERED_REFRESH_S = 1.0  # an unknown node id re-reads the registrations at most this often
TAKEOVER_RING_S = 3.0  # a new leader keeps its predecessor's rings this long


@dataclass(frozen=True, slots=True)
class Received:
    report: LoadReport
    at: float  # monotonic

    @property
    def age_s(self) -> float:
        return time.monotonic() - self.at

    @property
    def fresh(self) -> bool:
        return self.age_s <= STALE_INTERVALS * self.report.interval_s


def node_load(r: Received) -> NodeLoad:
    up = frozenset(s.service for s in r.report.services if s.up)
    latency = max((s.latency_ms for s in r.report.services if s.up), default=0.0)
    return NodeLoad(r.report.node_id, r.report.cpu, r.report.connections, latency, up, r.at)


class Scheduler:
    def __init__(self, state: ClusterState, term: Callable[[], int]) -> None:
        """term() is the leader term this node holds, 0 when it does not lead."""
        self.state, self.term = state, term
        self.loads: dict[str, Received] = {}
        self.loads_term = 0
        self.placer = Placer()
        self.weights: dict[str, dict[str, int]] = {}
        self.registered: frozenset[str] = frozenset()
        self.registered_at = -REGISTERED_REFRESH_S
        self.refused: Counter[str] = Counter()  # telemetry refused, by reason
        self.received = 0  # telemetry reports accepted while leading
        self.frozen_until = 0.0  # monotonic: keep the inherited rings until then (take_over)

    async def check_report(self, report: LoadReport) -> None:
        """Refuse (and count) a report that is malformed or from a node that is not
        registered: the load table holds registered nodes only. Raises ValidationError,
        NotFound."""
        problems = report_problems(report)
        if problems:
            self.refused["invalid"] += 1
            raise ValidationError([f"report.{p}" for p in problems])
        now = time.monotonic()
        if (
            report.node_id not in self.registered
            and now - self.registered_at > REGISTERED_REFRESH_S
        ):
            self.registered_at = now
            self._registered((await self.state.snapshot()).registrations.keys())
        if report.node_id not in self.registered:
            self.refused["unregistered"] += 1
            raise NotFound(f"node {report.node_id!r} is not registered: register it first")

    def _registered(self, nodes: Iterable[str]) -> None:
        self.registered = frozenset(nodes)
        for gone in self.loads.keys() - self.registered:
            del self.loads[gone]

    def record(self, report: LoadReport) -> int:
        """Keep an agent's (checked) report; return the leader term. Raises NotLeader."""
        term = self.term()
        if not term:
            raise NotLeader(
                "this node does not lead; send reports to the leader in `clusterctl status`"
            )
        self._forget_old_terms()
        self.loads[report.node_id] = Received(report, time.monotonic())
        self.received += 1
        self.placer.reported(report.node_id)
        return term

    def _forget_old_terms(self) -> None:
        """Reports received while this node led before are not evidence now."""
        if self.term() != self.loads_term:
            self.loads.clear()
            self.loads_term = self.term()

    def _candidates(
        self, snap: Snapshot, spec: ServiceSpec
    ) -> tuple[list[Candidate], dict[str, NodeLoad]]:
        self._forget_old_terms()
        now, wall = time.monotonic(), time.time()
        fresh = {n: node_load(r) for n, r in self.loads.items() if r.fresh}
        # A new leader has no streamed report yet: until one arrives, a node's summary in etcd
        # stands in for it (written every SUMMARY_STALE_S / 3), so placement does not stall.
        for n, report in snap.health.items():
            age = wall - report.at_unix_s
            if n not in self.loads and age <= SUMMARY_STALE_S:
                fresh[n] = node_load(Received(report, now - max(age, 0.0)))
        return eligible(spec.pool, spec.name, snap.designations, fresh, now, float("inf")), fresh

    async def place(
        self, service: str, count: int, client: str = ""
    ) -> tuple[dict[str, int], list[str]]:
        """Where `count` new connections would go now, and which servers are eligible."""
        if not self.term():
            raise NotLeader(
                "only the leader places connections; ask the leader in `clusterctl status`"
            )
        if not 1 <= count <= 100_000:
            raise ValidationError([f"count: {count} is not in 1..100000"])
        snap = await self.state.snapshot()
        spec = snap.services.get(service)
        if spec is None:
            raise NotFound(f"service {service!r} does not exist (see `clusterctl service list`)")
        candidates, loads = self._candidates(snap, spec)
        counts: dict[str, int] = {}
        for _ in range(count if candidates else 0):
            node = self.placer.pick(
                service, spec.policy, candidates, loads, client.encode() if client else None
            )
            if node is not None:
                counts[node] = counts.get(node, 0) + 1
        return counts, [c.node_id for c in candidates]

    def l7_candidates(
        self, snap: Snapshot, spec: ServiceSpec, rule: Rule | None, persist: bytes | None
    ) -> list[str]:
        """Where one L7 connection should go, best first: the placement's pick, then the other
        eligible servers of the rule's pool by score (the fallbacks when a handoff fails)."""
        pool = rule.pool if rule else spec.pool
        policy = rule.policy if rule and rule.policy else spec.policy
        candidates, loads = self._candidates(snap, replace(spec, pool=pool))
        key = f"{spec.name}/{rule.name if rule else '-'}"
        first = self.placer.pick(key, policy, candidates, loads, persist)
        if first is None:
            return []
        weight = {c.node_id: c.weight for c in candidates}
        rest = sorted(
            (c.node_id for c in candidates if c.node_id != first),
            key=lambda n: score(loads[n], weight[n]),
        )
        return [first, *rest]

    def take_over(self, rings: dict[str, dict[str, int]]) -> None:
        """A new leader starts from the rings its predecessor stored, unchanged for
        TAKEOVER_RING_S: a connection it has no flow for (its server could not be asked, e.g.
        the old leader itself) hashes to the same server as before, and its first packet here
        pins it there. Then weights follow load again."""
        self.weights = {name: dict(w) for name, w in rings.items()}
        self.frozen_until = time.monotonic() + TAKEOVER_RING_S

    async def service_weights(self, snap: Snapshot | None = None) -> dict[str, dict[str, int]]:
        """Kernel-datapath Maglev weights per service, with hysteresis across calls."""
        snap = snap or await self.state.snapshot()
        self._registered(snap.registrations.keys())
        frozen = time.monotonic() < self.frozen_until
        for name, spec in snap.services.items():
            if frozen and self.weights.get(name):
                continue
            candidates, loads = self._candidates(snap, spec)
            self.weights[name] = maglev_weights(candidates, loads, self.weights.get(name, {}))
        return {n: self.weights[n] for n in sorted(snap.services)}
