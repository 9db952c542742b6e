"""Prometheus metrics of one tcphopd, read at scrape time from the state the daemon keeps
(no second bookkeeping). Every family is named `tcphop_*`, units in names, counters `_total`;
labels are bounded by the cluster's nodes, services and rules, never by clients.

Families (README "Observability" lists them with their meaning):
- datapath: XDP counters by reason, flows in the table, whether it schedules, ring weights,
  new connections placed per service and server (counted in the kernel);
- servers (the leader's view): check state, current connections and weight per service and
  server;
- L7: outcomes, handoff and head-read latency, rule hits, the longest rule match;
- election: leader, term, VIPs held, handovers, step-downs by cause, lease keep-alive latency;
- etcd: request latency and errors per call, watch streams opened; event-loop lag;
- agent: this node's sampled CPU, load, memory, connections, checks; telemetry received and
  refused (on the leader); health and readiness.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from cluster.decision import STEP_DOWN_CAUSES
from cluster.election import RoleManager
from cluster.forwarding import Forwarder
from cluster.health import NodeHealth
from cluster.histogram import Histogram
from cluster.looplag import LoopLag
from cluster.model import LoadReport
from cluster.scheduler import Scheduler
from cluster.store.etcd import StoreStats

Labels: TypeAlias = tuple[str, ...]
Rows: TypeAlias = Iterable[tuple[Labels, float]]


@dataclass
class Sources:
    """The daemon's parts the metrics read."""

    node_id: str
    version: str
    roles: RoleManager
    scheduler: Scheduler
    store: StoreStats
    lag: LoopLag
    health: NodeHealth
    agent_report: Callable[[], LoadReport | None]
    forwarder: Forwarder | None = None


class _Families:
    """Builds metric families that all carry the `node` label first."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.out: list[Metric] = []

    def gauge(self, name: str, doc: str, rows: Rows = (), labels: Labels = ()) -> None:
        family = GaugeMetricFamily(f"tcphop_{name}", doc, labels=["node", *labels])
        for values, value in rows:
            family.add_metric([self.node_id, *values], value)
        self.out.append(family)

    def counter(self, name: str, doc: str, rows: Rows = (), labels: Labels = ()) -> None:
        family = CounterMetricFamily(f"tcphop_{name}", doc, labels=["node", *labels])
        for values, value in rows:
            family.add_metric([self.node_id, *values], value)
        self.out.append(family)

    def histogram(
        self, name: str, doc: str, rows: Iterable[tuple[Labels, Histogram]], labels: Labels = ()
    ) -> None:
        family = HistogramMetricFamily(f"tcphop_{name}", doc, labels=["node", *labels])
        for values, h in rows:
            family.add_metric([self.node_id, *values], h.cumulative(), h.sum_s)
        self.out.append(family)


class _Snapshot:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


async def render(src: Sources) -> bytes:
    """The exposition text. Walks of BPF maps run off the event loop."""
    flows, placed = 0, {}
    if src.forwarder is not None:
        datapath = src.forwarder.datapath
        flows = await asyncio.to_thread(datapath.flow_count)
        placed = await asyncio.to_thread(datapath.placed)
    f = _Families(src.node_id)
    _node(f, src)
    _election(f, src)
    _store(f, src)
    _agent(f, src)
    _servers(f, src)
    if src.forwarder is not None:
        _datapath(f, src.forwarder, flows, placed)
        _l7(f, src.forwarder)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(f.out))
    return generate_latest(registry)


def _node(f: _Families, src: Sources) -> None:
    f.gauge("build_info", "Always 1; the version in a label.", [((src.version,), 1)], ("version",))
    f.gauge(
        "node_healthy",
        "1 while registered and etcd is readable (/healthz).",
        [((), float(not src.health.problem()))],
    )
    f.gauge(
        "node_ready",
        "1 once the node serves its VIPs (/ready).",
        [((), float(not src.health.not_ready()))],
    )
    f.gauge(
        "event_loop_lag_seconds",
        "How late the daemon's event loop ran, last sample.",
        [((), src.lag.last_ms / 1000)],
    )
    f.gauge(
        "event_loop_lag_max_seconds",
        "The largest event-loop lag in the last 10 s.",
        [((), src.lag.max_ms / 1000)],
    )


def _election(f: _Families, src: Sources) -> None:
    roles = src.roles
    f.gauge(
        "election_leader",
        "1 while this node's leader lease is surely valid.",
        [((), float(roles.leader.valid()))],
    )
    f.gauge(
        "election_term",
        "The term this node leads; 0 when it does not lead.",
        [((), roles.leader.term)],
    )
    f.gauge(
        "election_vips_held",
        "VIPs this node holds (answers ARP for).",
        [((), len(roles.custody.held))],
    )
    f.counter(
        "election_handovers",
        "Planned handovers this node started as leader.",
        [((), roles.handovers)],
    )
    f.counter(
        "election_step_downs",
        "Times this node stopped leading, by cause.",
        [((c,), roles.step_downs[c]) for c in STEP_DOWN_CAUSES],
        ("cause",),
    )
    f.counter(
        "election_heartbeats",
        "Leader heartbeats, by outcome (written; failed: etcd unreachable).",
        [(("written",), roles.heartbeat.beats), (("failed",), roles.heartbeat.failed)],
        ("outcome",),
    )
    f.counter(
        "election_silent_leaders_replaced",
        "Leader keys this node freed because their leader's heartbeat stopped.",
        [((), roles.silence.replaced)],
    )
    f.histogram(
        "election_lease_keepalive_seconds",
        "Leader lease refresh round trips.",
        [((), roles.keepalive)],
    )


def _store(f: _Families, src: Sources) -> None:
    f.histogram(
        "etcd_request_seconds",
        "etcd calls that succeeded, by call.",
        sorted(((c,), h) for c, h in src.store.latency.items()),
        ("call",),
    )
    f.counter(
        "etcd_request_errors",
        "etcd calls that failed, by call and error.",
        sorted(src.store.errors.items()),
        ("call", "error"),
    )
    f.counter(
        "etcd_watches_opened",
        "Watch streams opened: one per watcher, then restarts.",
        [((), src.store.watches)],
    )


def _agent(f: _Families, src: Sources) -> None:
    r = src.agent_report()
    rows = [] if r is None else [((), r.cpu)]
    f.gauge("agent_cpu_ratio", "CPU busy, 0..1 over all cores (the agent's sample).", rows)
    f.gauge("agent_load1", "1-minute load average.", [] if r is None else [((), r.load1)])
    f.gauge(
        "agent_memory_used_ratio",
        "Memory in use, 0..1.",
        [] if r is None else [((), r.memory_used)],
    )
    f.gauge(
        "agent_connections",
        "Established connections on this node's VIP services.",
        [] if r is None else [((), r.connections)],
    )
    f.gauge(
        "agent_check_up",
        "1 while this node's health check of a service passes.",
        [((s.service,), float(s.up)) for s in (r.services if r else ())],
        ("service",),
    )
    s = src.scheduler
    f.counter(
        "telemetry_reports_received", "Agent reports accepted while leading.", [((), s.received)]
    )
    f.counter(
        "telemetry_reports_refused",
        "Agent reports refused, by reason.",
        sorted(((k,), v) for k, v in s.refused.items()),
        ("reason",),
    )


def _servers(f: _Families, src: Sources) -> None:
    """The leader's view of every server (empty on other nodes)."""
    up, conns = [], []
    if src.roles.leader.valid():
        for node, received in sorted(src.scheduler.loads.items()):
            if received.fresh:
                for h in received.report.services:
                    up.append(((h.service, node), float(h.up)))
                    conns.append(((h.service, node), float(h.connections)))
    labels = ("service", "server")
    f.gauge(
        "server_check_up", "Leader's view: 1 while a server passes a service's check.", up, labels
    )
    f.gauge(
        "server_connections", "Leader's view: established connections per server.", conns, labels
    )
    weights = src.scheduler.weights if src.roles.leader.valid() else {}
    f.gauge(
        "server_weight",
        "Leader's placement weight per service and server.",
        [((svc, n), w) for svc, ws in sorted(weights.items()) for n, w in sorted(ws.items())],
        labels,
    )


def _datapath(
    f: _Families, fw: Forwarder, flows: int, placed: dict[tuple[str, int, str], int]
) -> None:
    info, state = fw.datapath.info(), fw.datapath.programmed()
    f.counter(
        "datapath_packets",
        "Packets the XDP program handled, by outcome.",
        sorted(((k,), v) for k, v in info.stats.items()),
        ("reason",),
    )
    f.gauge("datapath_flows", "Connections pinned in the flow table.", [((), flows)])
    f.gauge(
        "datapath_scheduling",
        "1 while this node's XDP program schedules VIP traffic.",
        [((), float(state.scheduler is not None))],
    )
    services = state.scheduler.services if state.scheduler else ()
    f.gauge(
        "datapath_ring_weight",
        "Maglev weight of each server in a service's ring.",
        [((s.name, n), w) for s in services for n, w in s.weights],
        ("service", "server"),
    )
    name_of = {s.key: s.name for s in services}
    name_of |= {
        (s.vip, s.port): s.name for s in (fw.handoff.services().values() if fw.handoff else ())
    }
    rows = sorted(
        ((name_of.get((vip, port), f"{vip}:{port}"), node), n)
        for (vip, port, node), n in placed.items()
    )
    f.counter(
        "service_connections_placed",
        "New connections this node's XDP scheduler placed, by service and server.",
        rows,
        ("service", "server"),
    )


def _l7(f: _Families, fw: Forwarder) -> None:
    if fw.handoff is None:
        return
    h = fw.handoff
    outcomes = {**h.adopter.stats, **h.stats}
    f.counter(
        "l7_outcomes",
        "L7 connections by outcome (handoffs, answers, adoptions).",
        sorted(((k,), v) for k, v in outcomes.items()),
        ("outcome",),
    )
    f.histogram(
        "l7_handoff_seconds", "Request head read to connection handed off.", [((), h.latency)]
    )
    f.histogram(
        "l7_head_read_seconds",
        "Connection accepted to request head complete.",
        [((), h.head_latency)],
    )
    rows = sorted((tuple(k.split("/", 1)), v) for k, v in h.rule_hits.items())
    f.counter(
        "l7_rule_hits",
        "Requests per matching rule ('-': the service's default).",
        rows,
        ("service", "rule"),
    )
    f.gauge(
        "l7_rule_match_max_seconds", "The longest rule match so far.", [((), h.match_ms_max / 1000)]
    )
