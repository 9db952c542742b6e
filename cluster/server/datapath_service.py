"""The Datapath servicer: this node's datapath (counters, flows) and the VIP connections it
serves."""

from __future__ import annotations

import asyncio
from typing import Any, TypeAlias

import grpc

from cluster.api.v1 import cluster_pb2 as pb
from cluster.api.v1 import cluster_pb2_grpc
from cluster.errors import ValidationError
from cluster.l7.adopt import Adopter
from cluster.l7.handoff import L7Handoff
from cluster.looplag import LoopLag
from datapath.netlink import served_flows
from datapath.protocol import Datapath

Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]
DEFAULT_FLOWS = 1000
MAX_FLOWS = 100_000


class DatapathService(cluster_pb2_grpc.DatapathServicer):
    def __init__(
        self,
        node_id: str,
        datapath: Datapath | None,
        adopter: Adopter | None = None,
        handoff: L7Handoff | None = None,
        lag: LoopLag | None = None,
    ) -> None:
        self.node_id, self.datapath = node_id, datapath
        self.adopter, self.handoff = adopter, handoff
        self.lag = lag or LoopLag()

    async def GetDatapath(
        self, request: pb.GetDatapathRequest, context: Ctx
    ) -> pb.GetDatapathResponse:
        lag_ms, lag_max_ms = self.lag.last_ms, self.lag.max_ms
        if self.datapath is None:
            return pb.GetDatapathResponse(
                node_id=self.node_id, kind="none", loop_lag_ms=lag_ms, loop_lag_max_ms=lag_max_ms
            )
        info, state = self.datapath.info(), self.datapath.programmed()
        return pb.GetDatapathResponse(
            node_id=self.node_id,
            kind=info.kind,
            interface=info.interface,
            mode=info.mode,
            address=info.address,
            stats=info.stats,
            scheduling=state.scheduler is not None,
            vips=sorted(state.vips),
            trusted=sorted(state.trusted),
            handoff_stats={
                **(self.adopter.stats if self.adopter else {}),
                **(self.handoff.stats if self.handoff else {}),
            },
            rule_hits=self.handoff.rule_hits if self.handoff else {},
            handoff_p50_ms=self.handoff.latency_ms(0.5) if self.handoff else 0.0,
            handoff_p99_ms=self.handoff.latency_ms(0.99) if self.handoff else 0.0,
            rule_match_max_ms=self.handoff.match_ms_max if self.handoff else 0.0,
            loop_lag_ms=lag_ms,
            loop_lag_max_ms=lag_max_ms,
            rings=[
                pb.ServiceWeights(service=s.name, weights=dict(s.weights))
                for s in (state.scheduler.services if state.scheduler else ())
            ],
        )

    async def ListFlows(self, request: pb.ListFlowsRequest, context: Ctx) -> pb.ListFlowsResponse:
        limit = request.limit or DEFAULT_FLOWS
        if limit > MAX_FLOWS:
            raise ValidationError([f"limit: {limit} is above {MAX_FLOWS}"])
        if self.datapath is None:
            return pb.ListFlowsResponse(node_id=self.node_id)
        # A walk of up to MAX_FLOWS map entries is a few hundred ms of system calls: off the loop.
        flows = await asyncio.to_thread(self.datapath.flows, limit + 1)
        return pb.ListFlowsResponse(
            node_id=self.node_id,
            flows=[
                pb.Flow(
                    client=f.client, client_port=f.client_port, vip=f.vip, port=f.port, node=f.node
                )
                for f in flows[:limit]
            ],
            truncated=len(flows) > limit,
        )

    async def ListConnections(
        self, request: pb.ListConnectionsRequest, context: Ctx
    ) -> pb.ListConnectionsResponse:
        found = await asyncio.to_thread(served_flows, set(request.vips), self.node_id)
        return pb.ListConnectionsResponse(
            node_id=self.node_id,
            connections=[
                pb.Flow(client=f.client, client_port=f.client_port, vip=f.vip, port=f.port,
                        node=f.node)
                for f in found
            ],
        )  # fmt: skip
