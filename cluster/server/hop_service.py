"""The Hop servicer: this node's datapath (counters, flows) and the VIP connections it serves."""

from __future__ import annotations

import asyncio
from typing import Any, TypeAlias

import grpc

from agent.sample import established_connections
from cluster.adopt import Adopter
from cluster.api.v1 import cluster_pb2 as pb
from cluster.api.v1 import cluster_pb2_grpc
from cluster.errors import ValidationError
from cluster.l7 import L7Hopper
from cluster.looplag import LoopLag
from datapath.protocol import Datapath

Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]
DEFAULT_FLOWS = 1000
MAX_FLOWS = 100_000


class HopService(cluster_pb2_grpc.HopServicer):
    def __init__(
        self,
        node_id: str,
        datapath: Datapath | None,
        adopter: Adopter | None = None,
        hopper: L7Hopper | None = None,
        lag: LoopLag | None = None,
    ) -> None:
        self.node_id, self.datapath, self.adopter, self.hopper = node_id, datapath, adopter, hopper
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
            hop_stats={
                **(self.adopter.stats if self.adopter else {}),
                **(self.hopper.stats if self.hopper else {}),
            },
            rule_hits=self.hopper.rule_hits if self.hopper else {},
            hop_p50_ms=self.hopper.latency_ms(0.5) if self.hopper else 0.0,
            hop_p99_ms=self.hopper.latency_ms(0.99) if self.hopper else 0.0,
            rule_match_max_ms=self.hopper.match_ms_max if self.hopper else 0.0,
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
        vips = set(request.vips)
        found = await asyncio.to_thread(established_connections)
        return pb.ListConnectionsResponse(
            node_id=self.node_id,
            connections=[
                pb.Flow(client=peer, client_port=pport, vip=local, port=lport, node=self.node_id)
                for local, lport, peer, pport in found
                if not vips or local in vips
            ],
        )
