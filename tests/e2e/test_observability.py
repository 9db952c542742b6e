"""The metrics and health listener of real tcphopd processes: Prometheus text that its own
parser reads, health endpoints that follow the lease and etcd, gRPC health in step, and hostile
HTTP clients answered and bounded."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from cluster.sdk import ClusterClient, Role
from cluster.store.embedded import EmbeddedEtcd
from cluster.tls import TlsFiles, channel
from tests.conftest import Daemon, admin, async_wait_for, pause, tls_for, wait_for
from tests.e2e.test_election import StartDaemon, cluster, leader_is

pytestmark = [pytest.mark.etcd, pytest.mark.e2e]
# What every node exposes (datapath and L7 families need --datapath xdp: tests/netns/test_lab.py)
NODE_FAMILIES = {
    "tcphop_build_info", "tcphop_node_healthy", "tcphop_node_ready",
    "tcphop_event_loop_lag_seconds", "tcphop_event_loop_lag_max_seconds", "tcphop_election_leader",
    "tcphop_election_term",
    "tcphop_election_vips_held", "tcphop_election_handovers", "tcphop_election_step_downs",
    "tcphop_election_lease_keepalive_seconds", "tcphop_etcd_request_seconds",
    "tcphop_election_heartbeats", "tcphop_election_silent_leaders_replaced",
    "tcphop_etcd_request_errors", "tcphop_etcd_watches_opened", "tcphop_agent_cpu_ratio",
    "tcphop_agent_load1", "tcphop_agent_memory_used_ratio", "tcphop_agent_connections",
    "tcphop_agent_check_up", "tcphop_telemetry_reports_received",
    "tcphop_telemetry_reports_refused", "tcphop_server_check_up", "tcphop_server_connections",
    "tcphop_server_weight",
}  # fmt: skip


def get(address: str, path: str, tls: TlsFiles | None = None) -> tuple[int, bytes]:
    """GET over HTTPS, trusting the session CA; with `tls`, presenting its certificate."""
    ctx = ssl.create_default_context(cafile=str(admin().ca))
    if tls is not None:
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
    try:
        with urllib.request.urlopen(f"https://{address}{path}", context=ctx, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def scrape(daemon: Daemon) -> dict[str, Any]:
    status, body = get(daemon.http, "/metrics")
    assert status == 200, body
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def sample(families: dict[str, Any], name: str, **labels: str) -> float:
    """The sum of the samples `name` (a family, or one of a histogram's _count, _sum)."""
    family = families.get(name) or families[name.rsplit("_", 1)[0]]
    return sum(
        s.value
        for s in family.samples
        if s.name in (name, f"{name}_total") and labels.items() <= s.labels.items()
    )


async def test_metrics_and_leader_endpoint_follow_a_designation(start_daemon: StartDaemon) -> None:
    daemons, client = await cluster(start_daemon, {"n1": Role.PRIMARY, "n2": Role.BACKUP})
    async with client:
        await async_wait_for(lambda: leader_is(client, "n1"), 10, "n1 to lead")
        wait_for(lambda: get(daemons["n1"].http, "/leader")[0] == 200, 5, "/leader on n1")
        families = scrape(daemons["n1"])
        assert families.keys() >= NODE_FAMILIES, NODE_FAMILIES - families.keys()
        assert sample(families, "tcphop_election_leader") == 1
        assert sample(families, "tcphop_election_term") >= 1
        assert sample(families, "tcphop_etcd_request_seconds_count", call="range") > 0
        assert get(daemons["n2"].http, "/leader")[0] == 503
        for d in daemons.values():
            status, body = get(d.http, "/healthz", tls_for(d.node_id))  # a client cert is fine
            assert status == 200 and json.loads(body)["healthy"] is True, body
            assert get(d.http, "/ready")[0] == 200
        await client.designate("n2", Role.PRIMARY)
        await client.designate("n1", Role.BACKUP)
        wait_for(lambda: get(daemons["n2"].http, "/leader")[0] == 200, 5, "/leader to move")
        assert get(daemons["n1"].http, "/leader")[0] == 503
        n1 = scrape(daemons["n1"])
        assert sample(n1, "tcphop_election_handovers") == 1
        assert sample(n1, "tcphop_election_step_downs", cause="handover") == 1
        assert sample(n1, "tcphop_election_leader") == 0


async def test_healthz_and_grpc_health_turn_unhealthy_while_etcd_is_paused(
    start_daemon: StartDaemon, private_etcd: EmbeddedEtcd
) -> None:
    d = start_daemon("n1", etcd=private_etcd.url)
    wait_for(lambda: get(d.http, "/healthz")[0] == 200, 10, "n1 healthy")
    assert private_etcd.process is not None
    pause(private_etcd.process.pid)
    try:
        paused = time.monotonic()
        wait_for(lambda: get(d.http, "/healthz")[0] == 503, 5, "/healthz to turn 503")
        took_s = time.monotonic() - paused
        status, body = get(d.http, "/healthz")
        reason = json.loads(body)["reason"]
        assert status == 503 and ("etcd unreachable" in reason or "lease" in reason), body
        assert took_s <= 2 + 0.5, f"took {took_s:.2f} s; the node lease TTL is 2 s"
        # gRPC health follows every 0.25 s (cluster/health.py FOLLOW_S)
        await async_wait_for(lambda: grpc_status_is(d, "NOT_SERVING"), 2, "NOT_SERVING")
    finally:
        private_etcd.process.send_signal(signal.SIGCONT)
    wait_for(lambda: get(d.http, "/healthz")[0] == 200, 10, "/healthz back to 200")
    async with ClusterClient([d.endpoint], timeout_s=3, tls=admin()) as client:
        await client.status()
    await async_wait_for(lambda: grpc_status_is(d, "SERVING"), 5, "gRPC health back to SERVING")


async def grpc_health(d: Daemon) -> str:
    async with channel(d.endpoint, admin()) as ch:
        reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def grpc_status_is(d: Daemon, status: str) -> bool:
    return await grpc_health(d) == status


def raw(address: str, data: bytes) -> bytes:
    """Send `data` over TLS and return everything the listener answers."""
    host, port = address.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(admin().ca))
    with (
        socket.create_connection((host, int(port)), timeout=5) as s,
        ctx.wrap_socket(s, server_hostname=host) as t,
    ):
        t.sendall(data)
        out = b""
        while chunk := t.recv(65536):
            out += chunk
        return out


def test_hostile_http_requests_get_clear_answers(start_daemon: StartDaemon) -> None:
    d = start_daemon("n1")
    wait_for(lambda: get(d.http, "/healthz")[0] == 200, 10, "n1 healthy")
    answers = {
        b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n": b"405",
        b"GET /nothing HTTP/1.1\r\n\r\n": b"404",
        b"garbage\r\n\r\n": b"400",
        b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"a" * 9000 + b"\r\n\r\n": b"400",
        b"HEAD /healthz HTTP/1.1\r\n\r\n": b"200",
    }
    for request, code in answers.items():
        reply = raw(d.http, request)
        assert reply.split(b" ", 2)[1] == code, (request[:40], reply[:80])
    assert raw(d.http, b"HEAD /healthz HTTP/1.1\r\n\r\n").endswith(b"\r\n\r\n")  # no body
    host, port = d.http.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as plain:  # TLS is required
        plain.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            assert not plain.recv(100).startswith(b"HTTP/")
    assert get(d.http, "/healthz")[0] == 200  # and it still serves


def test_http_plaintext_by_name(start_daemon: StartDaemon) -> None:
    d = start_daemon("n1", extra=("--http-plaintext",))
    wait_for(lambda: b"tcphop_node_healthy" in plain_get(d.http, "/metrics"), 10, "metrics")


def plain_get(address: str, path: str) -> bytes:
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as r:
            return bytes(r.read())
    except OSError:
        return b""


def test_an_http_port_in_use_refuses_to_start(start_daemon: StartDaemon) -> None:
    first = start_daemon("n1")
    second = start_daemon("n2", wait=False, http=first.http)
    assert second.process.wait(timeout=15) == 2
    assert f"--http-listen {first.http}" in second.output()
