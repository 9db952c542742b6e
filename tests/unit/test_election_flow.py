"""The election end to end on the in-memory store (the same contract as etcd): campaigns,
handovers, step-downs and a stuck leader key, through the public `step()` only."""

from __future__ import annotations

import time

from cluster.config import ElectionConfig
from cluster.decision import Action
from cluster.documents import designation_to_doc, record_to_doc
from cluster.election import RoleManager
from cluster.keys import Keys
from cluster.leadership import RecordedVips
from cluster.model import Designation, Registration, Role, ServiceSpec
from cluster.snapshot import encode
from cluster.state import ClusterState
from cluster.store.memory import MemoryStore

KEYS = Keys()


async def cluster(store: MemoryStore, roles: dict[str, Role]) -> dict[str, RoleManager]:
    managers = {}
    for node, role in roles.items():
        reg = Registration(node, f"127.0.0.1:{1000 + int(node[1])}", "h", 1, "t", time.time())
        await store.put(KEYS.node(node), encode(record_to_doc(reg)))
        await store.put(KEYS.designation(node), encode(designation_to_doc(Designation(node, role))))
        managers[node] = RoleManager(
            store, KEYS, reg, ElectionConfig.for_ttl(2), RecordedVips(), lambda: None
        )
    await ClusterState(store, KEYS).apply_service(ServiceSpec("web", "10.0.0.1", 80))
    return managers


async def test_the_primary_leads_and_holds_the_vips_the_backup_follows() -> None:
    store = MemoryStore()
    m = await cluster(store, {"n1": Role.PRIMARY, "n2": Role.BACKUP})
    assert (await m["n1"].step()).action == Action.CAMPAIGN
    assert m["n1"].custody.held == {"10.0.0.1"}
    assert (await m["n2"].step()).action == Action.FOLLOW
    assert (await m["n1"].step()).action == Action.KEEP
    owner = await store.get(KEYS.vip("10.0.0.1"))
    assert owner is not None and b'"n1"' in owner.value


async def test_a_designation_change_hands_over_and_the_target_takes_over() -> None:
    store = MemoryStore()
    m = await cluster(store, {"n1": Role.PRIMARY, "n2": Role.BACKUP})
    await m["n1"].step()
    await m["n2"].step()
    await ClusterState(store, KEYS).designate("n2", Role.PRIMARY)
    await store.put(KEYS.candidate("n2"), b"{}")  # n2 is ready (its lease is not modelled here)
    assert (await m["n1"].step()).action == Action.HAND_OVER
    assert not m["n1"].leader.leading and m["n1"].custody.held == frozenset()
    assert (await m["n2"].step()).action == Action.CAMPAIGN
    assert m["n2"].leader.term == 2 and m["n2"].custody.held == {"10.0.0.1"}


async def test_a_leader_whose_lease_is_gone_steps_down_and_releases_the_vips() -> None:
    store = MemoryStore()
    m = await cluster(store, {"n1": Role.PRIMARY})
    await m["n1"].step()
    lease = m["n1"].leader.lease
    assert lease is not None
    await store.revoke(lease)
    assert (await m["n1"].step()).action == Action.STEP_DOWN
    assert m["n1"].custody.held == frozenset()


async def test_a_stuck_leader_key_is_cleared_then_campaigned_for() -> None:
    store = MemoryStore()
    m = await cluster(store, {"n1": Role.PRIMARY})
    await store.put(KEYS.leader, b"garbage")  # no lease: it would never expire
    assert (await m["n1"].step()).action == Action.CAMPAIGN  # clears the key
    assert await store.get(KEYS.leader) is None
    assert (await m["n1"].step()).action == Action.CAMPAIGN
    assert m["n1"].leader.leading


async def test_an_etcd_outage_makes_a_follower_wait() -> None:
    store = MemoryStore()
    m = await cluster(store, {"n1": Role.PRIMARY, "n2": Role.BACKUP})
    store.outage()
    decision = await m["n2"].step()
    assert decision.action == Action.WAIT and "etcd unreachable" in decision.reason
