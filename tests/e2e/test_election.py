"""Election with real tcphopd processes and a real etcd (VIPs recorded in etcd only)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from cluster.sdk import ClusterClient, EventType, Role, ServiceSpec
from tests.conftest import Daemon, admin, async_wait_for

pytestmark = [pytest.mark.etcd, pytest.mark.e2e]
StartDaemon = Callable[..., Daemon]


async def leader_is(client: ClusterClient, node: str) -> bool:
    st = await client.status()
    return st.leader is not None and st.leader.node_id == node


async def cluster(
    start_daemon: StartDaemon, roles: dict[str, Role]
) -> tuple[dict[str, Daemon], ClusterClient]:
    daemons = {n: start_daemon(n) for n in roles}
    client = ClusterClient([d.endpoint for d in daemons.values()], timeout_s=3, tls=admin())
    for node, role in roles.items():
        if role != Role.NONE:
            await client.designate(node, role)
    return daemons, client


async def test_designated_primary_wins_and_none_never_leads(start_daemon: StartDaemon) -> None:
    _, client = await cluster(
        start_daemon, {"n1": Role.BACKUP, "n2": Role.PRIMARY, "n3": Role.NONE}
    )
    async with client:
        await async_wait_for(lambda: leader_is(client, "n2"), 6, "n2 to lead")
        st = await client.status()
        assert st.leader is not None and st.leader.term >= 1
        assert "n3" not in st.candidates


async def test_backup_takes_over_from_a_killed_leader_within_ttl_plus_loop(
    start_daemon: StartDaemon,
) -> None:
    daemons, client = await cluster(start_daemon, {"n1": Role.PRIMARY, "n2": Role.BACKUP})
    async with client:
        await client.apply_service(ServiceSpec("web", "10.1.0.1", 80))
        await async_wait_for(lambda: leader_is(client, "n1"), 5, "n1 to lead")
        term = (await client.status()).leader.term  # type: ignore[union-attr]
        await asyncio.sleep(0.5)  # steady state: n2 has reached n1's API in this term
        daemons["n1"].process.kill()
        took = await async_wait_for(lambda: leader_is(client, "n2"), 1.0 + 0.2, "n2 to lead")
        print(f"kill -9 of the leader -> new leader in {took:.3f} s")
        st = await client.status()
        assert st.leader is not None and st.leader.term == term + 1
        assert [(o.vip, o.node_id) for o in st.vip_owners] == [("10.1.0.1", "n2")]


async def test_planned_handover_both_ways_is_recorded_as_events(start_daemon: StartDaemon) -> None:
    _, client = await cluster(start_daemon, {"n1": Role.PRIMARY, "n2": Role.BACKUP})
    async with client:
        await async_wait_for(lambda: leader_is(client, "n1"), 5, "n1 to lead")
        start = (await client.status()).revision + 1
        for target in ("n2", "n1"):
            t0 = time.monotonic()
            await client.designate(target, Role.PRIMARY)
            took = await async_wait_for(lambda t=target: leader_is(client, t), 2, f"{target}")
            print(f"planned handover to {target}: {took:.3f} s")
        kinds = []
        async with asyncio.timeout(3):
            async for ev in client.watch_events(start):
                if ev.type.startswith(("leader", "handover")):
                    kinds.append((ev.type, ev.subject))
                if len(kinds) == 8:
                    break
        assert kinds == [
            (EventType.HANDOVER_STARTED, "n2"),
            (EventType.LEADER_STEPPED_DOWN, "n1"),
            (EventType.LEADER_ELECTED, "n2"),
            (EventType.HANDOVER_COMPLETED, "n2"),
            (EventType.HANDOVER_STARTED, "n1"),
            (EventType.LEADER_STEPPED_DOWN, "n2"),
            (EventType.LEADER_ELECTED, "n1"),
            (EventType.HANDOVER_COMPLETED, "n1"),
        ]
        assert time.monotonic() - t0 < 5


async def test_demoting_the_leader_hands_over_but_a_lone_leader_keeps_leading_and_says_why(
    start_daemon: StartDaemon,
) -> None:
    _, client = await cluster(start_daemon, {"n1": Role.PRIMARY, "n2": Role.BACKUP})
    async with client:
        await async_wait_for(lambda: leader_is(client, "n1"), 5, "n1 to lead")
        await client.designate("n1", Role.NONE)
        await async_wait_for(lambda: leader_is(client, "n2"), 2, "n2 to take over")
        _, warnings = await client.designate("n2", Role.NONE)
        assert warnings == [
            "n2 leads and keeps leading: no other candidate is alive and ready to take over"
        ]
        await asyncio.sleep(0.5)
        st = await client.status()
        assert st.leader is not None and st.leader.node_id == "n2"
        assert "designated none but no other candidate is alive and ready" in st.leader.note


async def test_designation_storm_ends_with_one_leader_matching_the_last_designation(
    start_daemon: StartDaemon,
) -> None:
    daemons, client = await cluster(
        start_daemon, {"n1": Role.PRIMARY, "n2": Role.BACKUP, "n3": Role.BACKUP}
    )
    async with client:
        await client.apply_service(ServiceSpec("web", "10.1.0.1", 80))
        await async_wait_for(lambda: leader_is(client, "n1"), 5, "n1 to lead")
        order = ["n2", "n3", "n1"] * 7
        start = time.monotonic()
        for node in order[:20]:  # 20 changes in about 2 s
            await client.designate(node, Role.PRIMARY)
            await asyncio.sleep(0.1)
        assert time.monotonic() - start < 4
        final = order[19]
        await async_wait_for(lambda: leader_is(client, final), 5, f"{final} to lead")
        await asyncio.sleep(0.5)
        st = await client.status()
        assert st.leader is not None and st.leader.node_id == final
        assert [o.node_id for o in st.vip_owners] == [final]
        primaries = [n.node_id for n in st.nodes if n.designation.role == Role.PRIMARY]
        assert primaries == [final]
    for node, d in daemons.items():  # every step-down released before the next acquisition
        assert d.process.poll() is None, node
