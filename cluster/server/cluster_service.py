"""The tcphop.v1.Cluster servicer: convert, call ClusterState, convert back. No logic here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeAlias, TypeVar

import grpc

from cluster.api.v1 import cluster_pb2 as pb
from cluster.api.v1 import cluster_pb2_grpc
from cluster.errors import ValidationError
from cluster.model import ApplyResult, Role, Serving
from cluster.sdk import convert
from cluster.state import ClusterState

Ctx: TypeAlias = grpc.aio.ServicerContext[Any, Any]


_E = TypeVar("_E", Role, Serving)


def _enum_from_pb(table: Mapping[_E, int], value: int, field: str) -> _E:
    """The member for a wire value; UNSPECIFIED or unknown numbers are invalid input."""
    for member, number in table.items():
        if number == value:
            return member
    allowed = ", ".join(str(m) for m in table)
    raise ValidationError([f"{field}: {value} is not one of {allowed}"])


class ClusterService(cluster_pb2_grpc.ClusterServicer):
    def __init__(self, state: ClusterState) -> None:
        self.state = state

    async def ListNodes(self, request: pb.ListNodesRequest, context: Ctx) -> pb.ListNodesResponse:
        nodes, revision = await self.state.list_nodes()
        return pb.ListNodesResponse(nodes=[convert.node_to_pb(n) for n in nodes], revision=revision)

    async def GetNode(self, request: pb.GetNodeRequest, context: Ctx) -> pb.GetNodeResponse:
        return pb.GetNodeResponse(
            node=convert.node_to_pb(await self.state.get_node(request.node_id))
        )

    async def Designate(self, request: pb.DesignateRequest, context: Ctx) -> pb.DesignateResponse:
        designation, warnings = await self.state.designate(
            request.node_id, _enum_from_pb(convert.ROLE_TO_PB, request.role, "role"), request.force
        )
        return pb.DesignateResponse(
            designation=convert.designation_to_pb(designation), warnings=warnings
        )

    async def SetServing(
        self, request: pb.SetServingRequest, context: Ctx
    ) -> pb.SetServingResponse:
        weight = request.weight if request.HasField("weight") else None
        designation = await self.state.set_serving(
            request.node_id,
            _enum_from_pb(convert.SERVING_TO_PB, request.serving, "serving"),
            weight,
        )
        return pb.SetServingResponse(designation=convert.designation_to_pb(designation))

    async def ApplyService(
        self, request: pb.ApplyServiceRequest, context: Ctx
    ) -> pb.ApplyServiceResponse:
        result = await self.state.apply_service(convert.service_from_pb(request.service))
        return _applied(result)

    async def ApplyServices(
        self, request: pb.ApplyServicesRequest, context: Ctx
    ) -> pb.ApplyServicesResponse:
        specs = [convert.service_from_pb(s) for s in request.services]
        results = await self.state.apply_services(specs)
        return pb.ApplyServicesResponse(results=[_applied(r) for r in results])

    async def ListServices(
        self, request: pb.ListServicesRequest, context: Ctx
    ) -> pb.ListServicesResponse:
        return pb.ListServicesResponse(
            services=[convert.service_to_pb(s) for s in await self.state.list_services()]
        )

    async def GetService(
        self, request: pb.GetServiceRequest, context: Ctx
    ) -> pb.GetServiceResponse:
        return pb.GetServiceResponse(
            service=convert.service_to_pb(await self.state.get_service(request.name))
        )

    async def DeleteService(
        self, request: pb.DeleteServiceRequest, context: Ctx
    ) -> pb.DeleteServiceResponse:
        return pb.DeleteServiceResponse(revision=await self.state.delete_service(request.name))

    async def GetStatus(self, request: pb.GetStatusRequest, context: Ctx) -> pb.GetStatusResponse:
        return convert.status_to_pb(await self.state.status())

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: Ctx
    ) -> AsyncIterator[pb.Event]:
        if request.from_revision < 0:
            raise ValidationError([f"from_revision: {request.from_revision} must be >= 0"])
        async for event in self.state.events(request.from_revision):
            yield convert.event_to_pb(event)


def _applied(result: ApplyResult) -> pb.ApplyServiceResponse:
    return pb.ApplyServiceResponse(
        service=convert.service_to_pb(result.service),
        result=result.result,
        warnings=result.warnings,
        revision=result.revision,
    )
