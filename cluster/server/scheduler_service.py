"""Telemetry and Scheduler servicers: convert, call the leader's Scheduler, convert back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from cluster.api.v1 import cluster_pb2 as pb
from cluster.api.v1 import cluster_pb2_grpc
from cluster.errors import PermissionDenied
from cluster.scheduler import Scheduler
from cluster.sdk import convert
from cluster.server.access import CALLER

Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class TelemetryService(cluster_pb2_grpc.TelemetryServicer):
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    async def Report(
        self, request_iterator: AsyncIterator[pb.LoadReport], context: Ctx
    ) -> AsyncIterator[pb.ReportAck]:
        caller = CALLER.get()
        async for message in request_iterator:
            report = convert.report_from_pb(message)
            if caller is not None and report.node_id != caller.node_id:
                raise PermissionDenied(
                    f"the certificate of node {caller.node_id!r} cannot report as "
                    f"{report.node_id!r}"
                )
            await self.scheduler.check_report(report)
            yield pb.ReportAck(term=self.scheduler.record(report))


class SchedulerService(cluster_pb2_grpc.SchedulerServicer):
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    async def Place(self, request: pb.PlaceRequest, context: Ctx) -> pb.PlaceResponse:
        counts, eligible = await self.scheduler.place(
            request.service, request.count, request.client
        )
        return pb.PlaceResponse(counts=counts, eligible=eligible)

    async def GetLoads(self, request: pb.GetLoadsRequest, context: Ctx) -> pb.GetLoadsResponse:
        weights = await self.scheduler.service_weights()
        return pb.GetLoadsResponse(
            leader=self.scheduler.state.answered_by,
            term=self.scheduler.term(),
            loads=[
                pb.NodeLoad(report=convert.report_to_pb(r.report), age_s=r.age_s, fresh=r.fresh)
                for _, r in sorted(self.scheduler.loads.items())
            ],
            weights=[pb.ServiceWeights(service=s, weights=w) for s, w in weights.items()],
            refused_reports=self.scheduler.refused,
        )
