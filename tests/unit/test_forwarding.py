"""What each node's datapath should hold, from one snapshot (pure)."""

from __future__ import annotations

import socket
from dataclasses import replace

from cluster.forwarding import _connections_here, desired_state
from cluster.model import Mode, Registration, Role, ServiceSpec
from datapath.protocol import Flow, SchedulerTables, VipService
from tests.unit.test_election import snap


def view():  # type: ignore[no-untyped-def]
    base = snap({"n1": Role.PRIMARY, "n2": Role.NONE, "n3": Role.NONE}, alive={"n1", "n3"})
    return replace(
        base,
        registrations={
            "n1": Registration("n1", "10.0.2.11:7700", "h", 1, "v", 0.0),
            "n3": Registration("n3", "10.0.3.13:7700", "h", 1, "v", 0.0),
        },
        services={
            "web": ServiceSpec("web", "10.0.100.10", 80),
            "shop": ServiceSpec("shop", "10.0.100.11", 8080, mode=Mode.L7),
        },
    )


def test_every_node_binds_all_vips_and_trusts_every_registered_node() -> None:
    state = desired_state(view(), None)
    assert state.vips == {"10.0.100.10", "10.0.100.11"}
    assert state.trusted == {"10.0.2.11", "10.0.3.13"}  # n2 is not registered: not trusted
    assert state.scheduler is None
    assert state.handed == {("10.0.100.11", 8080)}  # every node: its L7 SYNs may come back


def test_the_leader_knows_the_l7_services_handed_off_too() -> None:
    state = desired_state(view(), {"web": {"n1": 500}})
    assert state.handed == {("10.0.100.11", 8080)}


def test_the_leader_gets_one_ring_per_service_from_the_weights() -> None:
    state = desired_state(view(), {"web": {"n1": 500, "n3": 1000, "n2": 700}})
    assert state.scheduler == SchedulerTables(
        backends=(("n1", "10.0.2.11"), ("n3", "10.0.3.13")),
        services=(
            VipService("shop", "10.0.100.11", 8080, True, ()),  # no weights: empty ring, drops
            # n2 has a weight but is not registered: it has no address to send to
            VipService("web", "10.0.100.10", 80, False, (("n1", 500), ("n3", 1000))),
        ),
    )


async def test_a_take_over_reads_its_own_connections_without_its_api() -> None:
    """The leader's own connections on the VIPs, pinned to itself, read through sock_diag in
    this namespace (a real connection on loopback); other addresses are left out."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            with accepted:
                flows = await _connections_here(["127.0.0.1"], "n1")
                assert flows is not None
                mine = Flow("127.0.0.1", client.getsockname()[1], "127.0.0.1", port, "n1")
                assert mine in flows
                assert not await _connections_here(["10.0.100.10"], "n1")
