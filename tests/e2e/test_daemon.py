"""Real tcphopd processes and a real etcd, reached through the SDK and plain gRPC."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cluster.api.v1 import cluster_pb2 as pb
from cluster.api.v1 import cluster_pb2_grpc
from cluster.daemon import EXIT_DUPLICATE
from cluster.sdk import (
    ClusterClient,
    EventType,
    InvalidArgument,
    NotFound,
    Role,
    ServiceSpec,
    Unavailable,
)
from cluster.store.embedded import EmbeddedEtcd, free_port
from cluster.tls import channel as tls_channel
from tests.conftest import Daemon, admin, async_wait_for, pause

pytestmark = [pytest.mark.etcd, pytest.mark.e2e]
StartDaemon = Callable[..., Daemon]


async def alive(client: ClusterClient, node_id: str) -> bool:
    return any(n.node_id == node_id and n.alive for n in await client.list_nodes())


async def test_daemons_register_and_any_node_answers(start_daemon: StartDaemon) -> None:
    nodes = [start_daemon(f"n{i}") for i in (1, 2, 3)]
    for d in nodes:
        async with ClusterClient([d.endpoint], tls=admin()) as client:
            listed = await client.list_nodes()
            assert [(n.node_id, n.alive) for n in listed] == [
                ("n1", True),
                ("n2", True),
                ("n3", True),
            ]
            assert {n.registration.endpoint for n in listed if n.registration} == {
                x.endpoint for x in nodes
            }
            assert (await client.status()).answered_by == d.node_id


async def test_killed_node_disappears_when_its_lease_expires(start_daemon: StartDaemon) -> None:
    watcher = start_daemon("n1")
    victim = start_daemon("n2")
    async with ClusterClient([watcher.endpoint], tls=admin()) as client:
        assert await alive(client, "n2")
        victim.process.kill()
        start = time.monotonic()
        took = await async_wait_for(lambda: _gone(client, "n2"), 2 + 1, "n2's lease to expire")
        print(f"lease expiry detected {took:.2f} s after SIGKILL (TTL 2 s)")
        assert time.monotonic() - start <= 3.0
        node = await client.get_node("n2")
        assert not node.alive and node.designation.node_id == "n2"


async def _gone(client: ClusterClient, node_id: str) -> bool:
    return not await alive(client, node_id)


async def test_clean_shutdown_deregisters_at_once(start_daemon: StartDaemon) -> None:
    watcher = start_daemon("n1")
    leaving = start_daemon("n2")
    async with ClusterClient([watcher.endpoint], tls=admin()) as client:
        leaving.process.send_signal(signal.SIGTERM)
        assert leaving.process.wait(timeout=10) == 0
        assert not await alive(client, "n2")  # no waiting for a TTL
    assert "node_deregistered" in leaving.output()


def test_second_daemon_with_the_same_node_id_refuses_to_start(start_daemon: StartDaemon) -> None:
    first = start_daemon("n1")
    second = start_daemon("n1", wait=False)
    assert second.process.wait(timeout=15) == EXIT_DUPLICATE
    out = second.output()
    assert "start_refused" in out and "node id 'n1' is already registered by a live tcphopd" in out
    assert first.endpoint in out  # says who holds it
    assert first.process.poll() is None


async def test_domain_errors_map_to_grpc_codes(start_daemon: StartDaemon) -> None:
    d = start_daemon("n1")
    async with tls_channel(d.endpoint, admin()) as channel:
        stub = cluster_pb2_grpc.ClusterStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ApplyService(
                pb.ApplyServiceRequest(
                    service=pb.ServiceSpec(
                        name="web",
                        vip="10.0.0.1",
                        port=70000,
                        protocol="tcp",
                        mode="l4",
                        policy="maglev",
                        persistence="none",
                        pool=pb.Pool(all=True),
                        health_check=pb.HealthCheck(
                            type="tcp", interval_s=1, timeout_s=1, rise=1, fall=1
                        ),
                    )
                )
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == "services.web.port: 70000 is not in 1..65535"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetService(pb.GetServiceRequest(name="nope"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Designate(pb.DesignateRequest(node_id="n1"))  # role unspecified
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "role: 0 is not one of" in (info.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetNode(pb.GetNodeRequest(node_id="ghost"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_and_reflection_are_served(start_daemon: StartDaemon) -> None:
    d = start_daemon("n1")
    async with tls_channel(d.endpoint, admin()) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "tcphop.v1.Cluster"):
            resp = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = refl.ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        reply = await call.read()
        await call.done_writing()
        names = {s.name for s in reply.list_services_response.service}
        assert {"tcphop.v1.Cluster", "grpc.health.v1.Health"} <= names


async def test_sdk_fails_over_to_the_next_endpoint(start_daemon: StartDaemon) -> None:
    d = start_daemon("n1")
    dead = f"127.0.0.1:{free_port()}"
    async with ClusterClient([dead, d.endpoint], timeout_s=3, tls=admin()) as client:
        assert [n.node_id for n in await client.list_nodes()] == ["n1"]
    async with ClusterClient([dead], timeout_s=1, tls=admin()) as client:
        with pytest.raises(Unavailable, match="no endpoint answered"):
            await client.list_nodes()


async def test_sdk_round_trips_and_typed_errors(start_daemon: StartDaemon) -> None:
    d = start_daemon("n1")
    async with ClusterClient([d.endpoint], tls=admin()) as client:
        designation, warnings = await client.designate("n1", Role.PRIMARY)
        assert designation.role is Role.PRIMARY and warnings == []
        with pytest.raises(NotFound, match="never registered"):
            await client.designate("n9", "backup")
        _, warnings = await client.designate("n9", "backup", force=True)
        assert "never registered" in warnings[0]
        spec = ServiceSpec("web", "10.1.0.1", 80)
        assert (await client.apply_service(spec)).result == "created"
        assert await client.get_service("web") == spec
        with pytest.raises(InvalidArgument, match="services.bad.vip"):
            await client.apply_service(ServiceSpec("bad", "300.1.1.1", 80))
        assert [s.name for s in await client.list_services()] == ["web"]


async def test_watch_events_streams_changes_in_order_and_resumes_elsewhere(
    start_daemon: StartDaemon,
) -> None:
    a, b = start_daemon("n1"), start_daemon("n2")
    async with ClusterClient([a.endpoint, b.endpoint], tls=admin()) as client:
        start = (await client.status()).revision + 1
        got: list[tuple[EventType, str, int]] = []

        async def collect() -> None:
            async for ev in client.watch_events(start):
                got.append((ev.type, ev.subject, ev.revision))
                if ev.type == EventType.SERVICE_DELETED:
                    return

        task = asyncio.create_task(collect())
        await client.apply_service(ServiceSpec("web", "10.1.0.1", 80))
        await async_wait_for(lambda: _has(got, 1), 5, "the first event")
        a.process.kill()  # the stream's node dies; the SDK resumes on n2
        await client.apply_service(ServiceSpec("web", "10.1.0.1", 81))
        await client.delete_service("web")
        await asyncio.wait_for(task, 10)
    web = [(t, s) for t, s, _ in got if s == "web"]
    assert web == [
        (EventType.SERVICE_APPLIED, "web"),
        (EventType.SERVICE_APPLIED, "web"),
        (EventType.SERVICE_DELETED, "web"),
    ]
    revisions = [r for _, _, r in got]
    assert revisions == sorted(set(revisions))  # in order, none twice


async def _has(items: list[object], n: int) -> bool:
    return len(items) >= n


async def test_etcd_outage_gives_unavailable_and_the_node_recovers(
    private_etcd: EmbeddedEtcd, start_daemon: StartDaemon
) -> None:
    d = start_daemon("n1", etcd=private_etcd.url)
    assert private_etcd.process is not None
    async with ClusterClient([d.endpoint], timeout_s=3, tls=admin()) as client:
        pause(private_etcd.process.pid)
        with pytest.raises(Unavailable, match="etcd at .* did not answer"):
            await client.list_nodes()
        await asyncio.sleep(2.5)  # longer than the lease TTL: the lease is lost
        private_etcd.process.send_signal(signal.SIGCONT)
        await async_wait_for(lambda: alive(client, "n1"), 8, "n1 to be registered again")
    assert d.process.poll() is None


def test_daemon_rejects_bad_arguments_with_usage_errors() -> None:
    import subprocess
    import sys

    for args, message in [
        (["--node-id", "Bad Id"], "--node-id: 'Bad Id' is not a valid name"),
        (["--node-id", "n1", "--etcd", "ftp://x:1"], "--etcd: etcd endpoint 'ftp://x:1'"),
        (["--node-id", "n1", "--listen", "nowhere"], "--listen: 'nowhere' is not of the form"),
        (["--node-id", "n1", "--datapath", "xdp"], "--datapath xdp: needs --uplink"),
        (
            ["--node-id", "n1", "--datapath", "xdp", "--uplink", "eth0"],
            "--advertise: with --datapath xdp the advertised host is where other nodes",
        ),
        (["--node-id", "n1", "--datapath", "ebpf"], "'ebpf' is not one of 'none', 'xdp'"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "cluster", *args], capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr
