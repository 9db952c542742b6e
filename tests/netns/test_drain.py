"""Drain with real connections counted by socket diagnostics inside a node's namespace."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from cluster.model import HealthCheck, Role, ServiceSpec, Serving
from cluster.sdk import ClusterClient
from lab.netcluster import NetCluster as Cluster
from lab.netns import ip
from tests.conftest import async_wait_for

pytestmark = [pytest.mark.netns, pytest.mark.etcd, pytest.mark.e2e]
PORT = 9090
HOLD = (  # accepts connections and keeps each until its client closes it
    "import socket, threading\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {PORT})); s.listen(16)\n"
    "def serve(c):\n"
    "    while c.recv(1024): pass\n"
    "    c.close()\n"
    "while True:\n"
    "    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()\n"
)
CLIENT = (  # one connection, held until stdin closes
    "import socket, sys\n"
    f"c = socket.create_connection((sys.argv[1], {PORT})); sys.stdin.read(); c.close()\n"
)


async def connections(client: ClusterClient, node: str) -> int:
    h = (await client.get_node(node)).health
    return -1 if h is None else h.connections


async def test_drain_wait_returns_after_the_last_connection_closes(cluster: Cluster) -> None:
    for i in (1, 2, 3):
        cluster.start(i)
    vip, ns = cluster.lab.vip(), cluster.lab.node_ns(3)
    ip("addr", "add", f"{vip}/32", "dev", "lo", netns=ns)  # n3 serves the VIP on lo
    server = subprocess.Popen(cluster.lab.exec(ns, sys.executable, "-c", HOLD))
    cluster.helpers.append(server)
    async with ClusterClient(cluster.endpoints, timeout_s=3, tls=cluster.admin_tls) as client:
        await client.designate("n1", Role.PRIMARY)
        check = HealthCheck(interval_s=0.2, timeout_s=0.2, rise=1, fall=2)
        await client.apply_service(ServiceSpec("web", vip, PORT, health_check=check))
        conn = subprocess.Popen(
            cluster.lab.exec(ns, sys.executable, "-c", CLIENT, vip), stdin=subprocess.PIPE
        )
        cluster.helpers.append(conn)
        await async_wait_for(lambda: has(client, "n3", 1), 8, "n3 to count 1 connection")
        tls = cluster.admin_tls
        env = {**os.environ, "TCPHOP_ENDPOINT": ",".join(cluster.endpoints)}
        env |= {"TCPHOP_TLS_CA": str(tls.ca), "TCPHOP_TLS_CERT": str(tls.cert)}
        env["TCPHOP_TLS_KEY"] = str(tls.key)
        drain = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.main",
                "server",
                "drain",
                "n3",
                "--wait",
                "--wait-timeout",
                "30",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            await async_wait_for(lambda: is_draining(client, "n3"), 5, "n3 to be draining")
            counts, eligible = await client.place("web", 30)
            assert "n3" not in eligible
            assert "n3" not in counts
            time.sleep(1)
            assert drain.poll() is None  # still waiting: the connection is open
            closed = time.monotonic()
            assert conn.stdin is not None
            conn.stdin.close()
            out, err = drain.communicate(timeout=10)
            print(f"drain --wait returned {time.monotonic() - closed:.2f} s after the close")
        finally:
            if drain.poll() is None:
                drain.kill()
        assert drain.returncode == 0, err
        assert out.splitlines() == [
            "n3: serving draining, weight 100",
            "n3: drained (0 connections)",
        ]


async def has(client: ClusterClient, node: str, n: int) -> bool:
    return await connections(client, node) == n


async def is_draining(client: ClusterClient, node: str) -> bool:
    return (await client.get_node(node)).designation.serving == Serving.DRAINING
