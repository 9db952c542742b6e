"""ClusterClient: the typed async client of a tcphop cluster.

    async with ClusterClient(["127.0.0.1:7701", "127.0.0.1:7702"]) as c:
        for node in await c.list_nodes():
            print(node.node_id, node.alive)

Any node answers every call. A call that finds an endpoint unavailable moves on to the next
one, within the call's timeout; the endpoint that answered is tried first next time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import TypeVar

import grpc

from cluster.api.v1 import cluster_pb2 as pb
from cluster.api.v1 import cluster_pb2_grpc
from cluster.model import (
    ApplyResult,
    ClusterEvent,
    ClusterStatus,
    Designation,
    Node,
    Role,
    ServiceSpec,
    Serving,
)
from cluster.sdk import convert, errors
from cluster.sdk.views import DatapathView, Flow, FlowsView, LoadsView, NodeLoadView
from cluster.tls import TlsFiles, channel

_T = TypeVar("_T")


_ERRORS: dict[grpc.StatusCode, type[errors.SdkError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: errors.NotLeader,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.OUT_OF_RANGE: errors.HistoryCompacted,
}
_FAILOVER = {grpc.StatusCode.UNAVAILABLE}
# Ping an endpoint with calls in flight every 10 s; no answer in 5 s fails them (UNAVAILABLE).
KEEPALIVE = (("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000))


def _error(e: grpc.aio.AioRpcError, endpoint: str) -> errors.SdkError:
    kind = _ERRORS.get(e.code(), errors.ServerError)
    details = e.details() or e.code().name
    if kind is errors.Unavailable:
        return kind(f"{endpoint}: {details}")
    return kind(details)


class ClusterClient:
    """Async client for any tcphopd node(s). Use as an async context manager.

    Secure by default: give `tls` (a CA to trust, a client certificate and key whose role
    grants the calls), or `insecure=True` by name for a cluster run with --insecure.
    """

    def __init__(
        self,
        endpoints: Sequence[str] | str,
        timeout_s: float = 5.0,
        *,
        tls: TlsFiles | None = None,
        insecure: bool = False,
    ) -> None:
        if (tls is None) == (not insecure):
            raise ValueError(
                "ClusterClient needs tls=TlsFiles(ca, cert, key), or insecure=True for a "
                "cluster that runs without TLS (not both)"
            )
        self.tls = tls
        items = endpoints.split(",") if isinstance(endpoints, str) else list(endpoints)
        self.endpoints = [e.strip() for e in items if e.strip()]
        if not self.endpoints:
            raise ValueError("ClusterClient needs at least one endpoint (host:port)")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._preferred = 0

    async def __aenter__(self) -> ClusterClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        for open_channel in self._channels.values():
            await open_channel.close()
        self._channels.clear()

    def _channel(self, endpoint: str) -> grpc.aio.Channel:
        if endpoint not in self._channels:
            self._channels[endpoint] = channel(endpoint, self.tls, KEEPALIVE)
        return self._channels[endpoint]

    def _stub(self, endpoint: str) -> cluster_pb2_grpc.ClusterStub:
        return cluster_pb2_grpc.ClusterStub(self._channel(endpoint))

    def _order(self) -> list[int]:
        n = len(self.endpoints)
        return [(self._preferred + i) % n for i in range(n)]

    async def _call(
        self,
        op: Callable[[cluster_pb2_grpc.ClusterStub, float], Awaitable[_T]],
        timeout_s: float | None,
    ) -> _T:
        budget = timeout_s or self.timeout_s
        deadline = asyncio.get_running_loop().time() + budget
        failures: list[str] = []
        order = self._order()
        for n, i in enumerate(order):
            endpoint = self.endpoints[i]
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            remaining = len(order) - n
            try:
                # A hung endpoint may take only its share of the budget, so the next can answer.
                result = await op(self._stub(endpoint), left / remaining)
            except grpc.aio.AioRpcError as e:
                hung = e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and remaining > 1
                if e.code() not in _FAILOVER and not hung:
                    raise _error(e, endpoint) from None
                failures.append(f"{endpoint}: {e.details() or e.code().name}")
                continue
            self._preferred = i
            return result
        if not failures:
            raise errors.DeadlineExceeded(f"no answer within {budget} s")
        raise errors.Unavailable("no endpoint answered: " + "; ".join(failures))

    # --- nodes ---------------------------------------------------------------------------

    async def list_nodes(self, timeout_s: float | None = None) -> list[Node]:
        resp = await self._call(
            lambda s, t: s.ListNodes(pb.ListNodesRequest(), timeout=t), timeout_s
        )
        return [convert.node_from_pb(n) for n in resp.nodes]

    async def get_node(self, node_id: str, timeout_s: float | None = None) -> Node:
        resp = await self._call(
            lambda s, t: s.GetNode(pb.GetNodeRequest(node_id=node_id), timeout=t), timeout_s
        )
        return convert.node_from_pb(resp.node)

    async def designate(
        self, node_id: str, role: Role | str, force: bool = False, timeout_s: float | None = None
    ) -> tuple[Designation, list[str]]:
        """Set a node's scheduler role; returns the designation and any warnings."""
        req = pb.DesignateRequest(node_id=node_id, role=convert.ROLE_TO_PB[Role(role)], force=force)
        resp = await self._call(lambda s, t: s.Designate(req, timeout=t), timeout_s)
        return convert.designation_from_pb(resp.designation), list(resp.warnings)

    async def set_serving(
        self,
        node_id: str,
        serving: Serving | str,
        weight: int | None = None,
        timeout_s: float | None = None,
    ) -> Designation:
        req = pb.SetServingRequest(
            node_id=node_id, serving=convert.SERVING_TO_PB[Serving(serving)], weight=weight
        )
        resp = await self._call(lambda s, t: s.SetServing(req, timeout=t), timeout_s)
        return convert.designation_from_pb(resp.designation)

    # --- services ------------------------------------------------------------------------

    async def apply_service(self, spec: ServiceSpec, timeout_s: float | None = None) -> ApplyResult:
        req = pb.ApplyServiceRequest(service=convert.service_to_pb(spec))
        resp = await self._call(lambda s, t: s.ApplyService(req, timeout=t), timeout_s)
        return ApplyResult(
            convert.service_from_pb(resp.service), resp.result, resp.revision, tuple(resp.warnings)
        )

    async def apply_services(
        self, specs: Sequence[ServiceSpec], timeout_s: float | None = None
    ) -> list[ApplyResult]:
        """Apply several services in one transaction: all are stored, or none."""
        req = pb.ApplyServicesRequest(services=[convert.service_to_pb(s) for s in specs])
        resp = await self._call(lambda s, t: s.ApplyServices(req, timeout=t), timeout_s)
        return [
            ApplyResult(convert.service_from_pb(r.service), r.result, r.revision, tuple(r.warnings))
            for r in resp.results
        ]

    async def list_services(self, timeout_s: float | None = None) -> list[ServiceSpec]:
        resp = await self._call(
            lambda s, t: s.ListServices(pb.ListServicesRequest(), timeout=t), timeout_s
        )
        return [convert.service_from_pb(m) for m in resp.services]

    async def get_service(self, name: str, timeout_s: float | None = None) -> ServiceSpec:
        resp = await self._call(
            lambda s, t: s.GetService(pb.GetServiceRequest(name=name), timeout=t), timeout_s
        )
        return convert.service_from_pb(resp.service)

    async def delete_service(self, name: str, timeout_s: float | None = None) -> int:
        resp = await self._call(
            lambda s, t: s.DeleteService(pb.DeleteServiceRequest(name=name), timeout=t), timeout_s
        )
        return int(resp.revision)

    # --- placement and load (answered by the leader) -----------------------------------------

    async def place(
        self, service: str, count: int = 1, client: str = "", timeout_s: float | None = None
    ) -> tuple[dict[str, int], list[str]]:
        """Where `count` new connections to a service would go now, and the eligible servers.

        Any endpoint may be given; the call goes to the leader (read from status).
        """
        req = pb.PlaceRequest(service=service, count=count, client=client)
        resp = await self._leader_call(lambda s, t: s.Place(req, timeout=t), timeout_s)
        return dict(resp.counts), list(resp.eligible)

    async def loads(self, timeout_s: float | None = None) -> LoadsView:
        """The leader's in-memory load table and the kernel-datapath weights per service."""
        resp = await self._leader_call(
            lambda s, t: s.GetLoads(pb.GetLoadsRequest(), timeout=t), timeout_s
        )
        return LoadsView(
            resp.leader,
            resp.term,
            tuple(
                NodeLoadView(convert.report_from_pb(n.report), n.age_s, n.fresh) for n in resp.loads
            ),
            {w.service: dict(w.weights) for w in resp.weights},
            dict(resp.refused_reports),
        )

    async def datapath(
        self, node_id: str | None = None, timeout_s: float | None = None
    ) -> DatapathView:
        """A node's datapath (default: the leader's), answered by that node."""
        stub = cluster_pb2_grpc.DatapathStub(await self._node_channel(node_id, timeout_s))
        r = await self._direct(
            stub.GetDatapath(pb.GetDatapathRequest(), timeout=self._t(timeout_s))
        )
        return DatapathView(
            r.node_id,
            r.kind,
            r.interface,
            r.mode,
            r.address,
            r.scheduling,
            tuple(r.vips),
            tuple(r.trusted),
            dict(r.stats),
            {w.service: dict(w.weights) for w in r.rings},
            dict(r.handoff_stats),
            dict(r.rule_hits),
            r.handoff_p50_ms,
            r.handoff_p99_ms,
            r.loop_lag_ms,
            r.loop_lag_max_ms,
            r.rule_match_max_ms,
        )

    async def flows(
        self, node_id: str | None = None, limit: int = 1000, timeout_s: float | None = None
    ) -> FlowsView:
        """A node's flow table (default: the leader's): connections pinned to servers."""
        stub = cluster_pb2_grpc.DatapathStub(await self._node_channel(node_id, timeout_s))
        r = await self._direct(
            stub.ListFlows(pb.ListFlowsRequest(limit=limit), timeout=self._t(timeout_s))
        )
        flows = tuple(Flow(f.client, f.client_port, f.vip, f.port, f.node) for f in r.flows)
        return FlowsView(r.node_id, flows, r.truncated)

    def _t(self, timeout_s: float | None) -> float:
        return timeout_s or self.timeout_s

    async def _node_channel(self, node_id: str | None, timeout_s: float | None) -> grpc.aio.Channel:
        if node_id is None:
            leader = (await self.status(timeout_s)).leader
            if leader is None:
                raise errors.NotLeader("the cluster has no leader right now; name a node")
            return self._channel(leader.endpoint)
        node = await self.get_node(node_id, timeout_s)
        if node.registration is None:
            raise errors.Unavailable(f"node {node_id} is not alive (see `clusterctl nodes list`)")
        return self._channel(node.registration.endpoint)

    async def _direct(self, call: Awaitable[_T]) -> _T:
        try:
            return await call
        except grpc.aio.AioRpcError as e:
            raise _error(e, "the node") from None

    async def _leader_call(
        self,
        op: Callable[[cluster_pb2_grpc.SchedulerStub, float], Awaitable[_T]],
        timeout_s: float | None,
    ) -> _T:
        leader = (await self.status(timeout_s)).leader
        if leader is None:
            raise errors.NotLeader("the cluster has no leader right now; try again")
        channel = self._channel(leader.endpoint)
        try:
            return await op(cluster_pb2_grpc.SchedulerStub(channel), timeout_s or self.timeout_s)
        except grpc.aio.AioRpcError as e:
            raise _error(e, leader.endpoint) from None

    # --- status and events ---------------------------------------------------------------

    async def status(self, timeout_s: float | None = None) -> ClusterStatus:
        resp = await self._call(
            lambda s, t: s.GetStatus(pb.GetStatusRequest(), timeout=t), timeout_s
        )
        return convert.status_from_pb(resp)

    async def watch_events(self, from_revision: int = 0) -> AsyncIterator[ClusterEvent]:
        """Cluster events in order, forever; resumes on another endpoint if one fails.

        from_revision 0 starts from now. Every event is delivered once, in order, across
        resumes (several events can share a revision: they are counted). A silent endpoint is
        detected by gRPC keepalive within about 15 s.
        """
        revision = from_revision or (await self.status()).revision + 1
        delivered = 0  # events already delivered at `revision`
        failures = 0
        while True:
            endpoint = self.endpoints[self._order()[0]]
            call = self._stub(endpoint).WatchEvents(pb.WatchEventsRequest(from_revision=revision))
            skip = delivered
            try:
                async for msg in call:
                    failures = 0
                    event = convert.event_from_pb(msg)
                    if event.revision == revision and skip:
                        skip -= 1
                        continue
                    if event.revision != revision:
                        revision, delivered = event.revision, 0
                    delivered += 1
                    yield event
            except grpc.aio.AioRpcError as e:
                if e.code() not in _FAILOVER:
                    raise _error(e, endpoint) from None
                failures += 1
                if failures > 2 * len(self.endpoints):
                    raise errors.Unavailable(
                        f"event stream lost: {endpoint}: {e.details()}"
                    ) from None
                self._preferred = (self._preferred + 1) % len(self.endpoints)
                await asyncio.sleep(min(0.1 * failures, 1.0))
            finally:
                call.cancel()
