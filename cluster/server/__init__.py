"""The gRPC server of a tcphopd node: Cluster, Telemetry, Scheduler, Datapath, grpc.health.v1 and
reflection."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from cluster.api.v1 import cluster_pb2, cluster_pb2_grpc
from cluster.l7.adopt import Adopter
from cluster.l7.handoff import L7Handoff
from cluster.looplag import LoopLag
from cluster.scheduler import Scheduler
from cluster.server.cluster_service import ClusterService
from cluster.server.datapath_service import DatapathService
from cluster.server.interceptors import ErrorMappingInterceptor
from cluster.server.scheduler_service import SchedulerService, TelemetryService
from cluster.state import ClusterState
from cluster.tls import TlsFiles
from datapath.protocol import Datapath

CLUSTER_SERVICE = cluster_pb2.DESCRIPTOR.services_by_name["Cluster"].full_name
HEALTH_SERVICES = ["", CLUSTER_SERVICE]  # the server as a whole, and the Cluster service


async def start_server(
    state: ClusterState,
    scheduler: Scheduler,
    listen: str,
    datapath: Datapath | None = None,
    adopter: Adopter | None = None,
    handoff: L7Handoff | None = None,
    lag: LoopLag | None = None,
    tls: TlsFiles | None = None,
    health: HealthServicer | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Start serving on listen (host:port, port 0 picks one); return the server and its port.
    With `tls`, mutual TLS and roles on every call; without, plaintext (--insecure). `health`
    starts SERVING on HEALTH_SERVICES; its owner follows the node's state
    (cluster/health.py)."""
    # Accept the SDK's keepalive pings (every 10 s) instead of answering them with GOAWAY.
    server = grpc.aio.server(
        interceptors=[ErrorMappingInterceptor(enforce_roles=tls is not None)],
        options=[
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ],
    )
    cluster_pb2_grpc.add_ClusterServicer_to_server(ClusterService(state), server)
    cluster_pb2_grpc.add_TelemetryServicer_to_server(TelemetryService(scheduler), server)
    cluster_pb2_grpc.add_SchedulerServicer_to_server(SchedulerService(scheduler), server)
    cluster_pb2_grpc.add_DatapathServicer_to_server(
        DatapathService(state.answered_by, datapath, adopter, handoff, lag), server
    )
    health = health or HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [
            CLUSTER_SERVICE,
            cluster_pb2.DESCRIPTOR.services_by_name["Telemetry"].full_name,
            cluster_pb2.DESCRIPTOR.services_by_name["Scheduler"].full_name,
            cluster_pb2.DESCRIPTOR.services_by_name["Datapath"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    port = (
        server.add_secure_port(listen, tls.server_credentials())
        if tls is not None
        else server.add_insecure_port(listen)
    )
    if port == 0:
        raise OSError(f"cannot listen on {listen}: address in use or not local")
    await server.start()
    for name in HEALTH_SERVICES:
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port
