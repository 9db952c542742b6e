"""The SDK's views of what nodes answer: loads, a node's datapath, its flow table.

Owned by the SDK (no datapath or control-plane type leaks through it); `ClusterClient` builds
them from the wire messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cluster.model import LoadReport


@dataclass(frozen=True, slots=True)
class NodeLoadView:
    report: LoadReport
    age_s: float
    fresh: bool  # reported within 3 of its intervals: eligible for new connections


@dataclass(frozen=True, slots=True)
class LoadsView:
    leader: str
    term: int
    loads: tuple[NodeLoadView, ...]
    weights: dict[str, dict[str, int]]  # service -> node -> kernel-datapath Maglev weight
    refused_reports: dict[str, int] = field(default_factory=dict)  # by reason, since start


@dataclass(frozen=True, slots=True)
class DatapathView:
    """One node's datapath: what it programmed and its counters by reason."""

    node_id: str
    kind: str  # "xdp", or "none"
    interface: str
    mode: str
    address: str
    scheduling: bool
    vips: tuple[str, ...]
    trusted: tuple[str, ...]
    stats: dict[str, int]
    rings: dict[str, dict[str, int]]  # service -> node -> weight its Maglev ring holds
    handoff_stats: dict[str, int]  # L7 handoff outcomes (scheduler) and adoptions (any node)
    rule_hits: dict[str, int]  # "service/rule" -> requests matched ("service/-": default pool)
    handoff_p50_ms: float
    handoff_p99_ms: float
    loop_lag_ms: float = 0.0  # how late the node's event loop runs now
    loop_lag_max_ms: float = 0.0  # the most in the last 10 s
    rule_match_max_ms: float = 0.0  # the longest L7 rule match on this node


@dataclass(frozen=True, slots=True)
class Flow:
    """A connection pinned to a server in a node's flow table (or served by its stack)."""

    client: str
    client_port: int
    vip: str
    port: int
    node: str  # the server ("" when its address is unknown)


@dataclass(frozen=True, slots=True)
class FlowsView:
    node_id: str
    flows: tuple[Flow, ...]
    truncated: bool
