"""The agent loop: sample, check, stream to the leader, summarise in etcd.

Every `interval_s` it samples the node and runs the health checks that are due (each service's
own `interval_s`), for every service whose pool includes this node. Reports stream to the
current leader (`Telemetry.Report`), found in etcd and followed across leader changes with
backoff; every SUMMARY_S a summary goes to `health/<id>` under the node's lease, so the CLI and
a new leader see a recent view.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import grpc
import structlog

from agent.checks import CheckState, probe
from agent.sample import Sample, Sampler
from cluster.api.v1 import cluster_pb2 as pb
from cluster.api.v1 import cluster_pb2_grpc
from cluster.model import Delivery, LoadReport, Mode, ServiceHealth, ServiceSpec
from cluster.sdk import convert
from cluster.tls import TlsFiles, channel

log = structlog.get_logger()
SUMMARY_S = 2.0
CHECK_VIP = "vip"  # --check-host value: check each service on its own VIP


class ClusterLink(Protocol):
    """What the agent needs of the cluster; the daemon hands it one (cluster/agentlink.py)."""

    async def lookup(self) -> tuple[list[ServiceSpec], str] | None:
        """The services whose pool names this node and the leader's API endpoint ("" when
        none leads); None when the cluster cannot be read now."""
        ...

    async def publish(self, report: LoadReport) -> None:
        """Store the node's health summary (best effort: a failure is logged, not raised)."""
        ...


class Agent:
    def __init__(
        self,
        link: ClusterLink,
        node_id: str,
        interval_s: float = 0.5,
        check_host: str = "127.0.0.1",
        cpu_scope: str = "machine",
        tls: TlsFiles | None = None,
    ) -> None:
        self.link, self.node_id, self.tls = link, node_id, tls
        self.interval_s, self.check_host, self.cpu_scope = interval_s, check_host, cpu_scope
        self.services: list[ServiceSpec] = []
        self.checks: dict[str, CheckState] = {}
        self.next_check: dict[str, float] = {}
        self.latest: LoadReport | None = None
        self.reported = asyncio.Event()
        self.summary_due = asyncio.Event()
        self.leader = ""  # the endpoint the stream should go to
        self.term = 0  # the leader term that last acknowledged a report
        # Called when the stream to the leader breaks: a killed leader's kernel resets it at
        # once, long before anything in etcd changes (the election probes the leader then).
        self.on_stream_failed: Callable[[], None] = lambda: None

    async def run(self, stop: asyncio.Event) -> None:
        sampler = Sampler(scope=self.cpu_scope)
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self._sample_loop(sampler)),
                tg.create_task(self._summary_loop()),
                tg.create_task(self._stream_loop()),
            ]
            await stop.wait()
            for task in tasks:
                task.cancel()

    # --- sampling and checks ---------------------------------------------------------------

    async def _sample_loop(self, sampler: Sampler) -> None:
        while True:
            started = time.monotonic()
            try:
                changed = await self._run_due_checks()
                self.latest = self._report(await sampler.sample())
                self.reported.set()
                if changed:
                    self.summary_due.set()  # a new leader reads summaries: keep them current
            except Exception:
                log.exception("agent_sample_failed")
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    async def _run_due_checks(self) -> bool:
        """Run the checks that are due; True if one changed state."""
        now = time.monotonic()
        due = [s for s in self.services if self.next_check.get(s.name, 0.0) <= now]
        changed = False
        results = await asyncio.gather(
            *(probe(s.health_check, *self._check_target(s)) for s in due)
        )
        for spec, (ok, latency_ms, error) in zip(due, results, strict=True):
            hc = spec.health_check
            state = self.checks.setdefault(spec.name, CheckState(hc.rise, hc.fall))
            was_up = state.up
            state.record(ok, latency_ms, error)
            if state.up != was_up:
                log.info("check_changed", service=spec.name, up=state.up, reason=error or "ok")
                changed = True
            self.next_check[spec.name] = now + hc.interval_s
        return changed

    def _check_target(self, spec: ServiceSpec) -> tuple[str, int]:
        """Where a service's check connects. L4: its VIP (bound on lo by the datapath) or the
        --check-host; L7: the application connections are delivered to on this node."""
        if spec.mode == Mode.L7:
            target = spec.delivery_target.replace("{node}", self.node_id)
            if spec.delivery == Delivery.DESCRIPTOR:
                return target, 0
            host, _, port = target.rpartition(":")
            return host, int(port)
        return (spec.vip if self.check_host == CHECK_VIP else self.check_host), spec.port

    def _report(self, sample: Sample) -> LoadReport:
        health = []
        for spec in self.services:
            state = self.checks.get(spec.name)
            health.append(
                ServiceHealth(
                    spec.name,
                    bool(state and state.up),
                    state.latency_ms if state else 0.0,
                    sample.connections.get((spec.vip, spec.port), 0),
                    state.last_error if state else "not checked yet",
                )
            )
        vips = {(s.vip, s.port) for s in self.services}
        total = sum(n for end, n in sample.connections.items() if end in vips)
        return LoadReport(
            self.node_id,
            sample.cpu,
            sample.load1,
            sample.memory_used,
            total,
            tuple(health),
            self.interval_s,
            time.time(),
        )

    # --- etcd: services to check, leader to follow, summary ---------------------------------

    async def _look_up(self) -> None:
        """The services to check and the leader to stream to, as the cluster says now."""
        found = await self.link.lookup()
        if found is not None:
            self.services, self.leader = found

    async def _summary_loop(self) -> None:
        while True:
            self.summary_due.clear()  # before the write: a request during it is not lost
            await self._look_up()
            if self.latest is not None:
                await self.link.publish(self.latest)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SUMMARY_S if self.leader else self.interval_s):
                    await self.summary_due.wait()

    # --- the stream to the leader -----------------------------------------------------------

    async def _stream_loop(self) -> None:
        backoff = 0.1
        while True:
            target = self.leader
            if not target:
                await asyncio.sleep(self.interval_s)
                continue
            try:
                async with channel(target, self.tls) as leader:
                    call = cluster_pb2_grpc.TelemetryStub(leader).Report(self._reports(target))
                    async for ack in call:
                        backoff = 0.1
                        self.term = ack.term
                log.info("telemetry_stream_ended", leader=target, reason="leader changed")
            except grpc.aio.AioRpcError as e:
                log.info(
                    "telemetry_stream_failed", leader=target, code=e.code().name, reason=e.details()
                )
                self.on_stream_failed()
                await self._look_up()  # the leader may have changed
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def _reports(self, target: str) -> AsyncIterator[pb.LoadReport]:
        while self.leader == target:
            self.reported.clear()
            if self.latest is not None:
                yield convert.report_to_pb(self.latest)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s * 2):
                    await self.reported.wait()
