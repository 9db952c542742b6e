"""ClusterState and Membership against a real etcd."""

from __future__ import annotations

import asyncio
import time

import pytest

from cluster.errors import AlreadyExists, NotFound, ValidationError
from cluster.keys import Keys, Kind
from cluster.membership import Membership
from cluster.model import Designation, EventType, Pool, Registration, Role, ServiceSpec, Serving
from cluster.state import ClusterState
from cluster.store.etcd import EtcdStore

pytestmark = pytest.mark.etcd


def registration(node_id: str) -> Registration:
    return Registration(node_id, "127.0.0.1:1", "host", 1, "test", time.time())


@pytest.fixture
def state(store: EtcdStore, keys: Keys) -> ClusterState:
    return ClusterState(store, keys, answered_by="test")


async def join(store: EtcdStore, keys: Keys, node_id: str, ttl_s: int = 2) -> Membership:
    m = Membership(store, keys, registration(node_id), ttl_s)
    await m.register()
    return m


async def test_registered_node_is_listed_alive_with_default_designation(
    store: EtcdStore, keys: Keys, state: ClusterState
) -> None:
    await join(store, keys, "n1")
    [node], _ = await state.list_nodes()
    assert node.alive and node.registration is not None
    assert (node.registration.node_id, node.registration.endpoint) == ("n1", "127.0.0.1:1")
    assert node.designation == Designation("n1", Role.NONE, Serving.ENABLED, 100)


async def test_second_registration_of_a_node_id_is_refused(store: EtcdStore, keys: Keys) -> None:
    await join(store, keys, "n1")
    with pytest.raises(AlreadyExists, match="node id 'n1' is already registered by a live"):
        await join(store, keys, "n1")


async def test_deregister_removes_the_node_at_once_but_keeps_its_designation(
    store: EtcdStore, keys: Keys, state: ClusterState
) -> None:
    m = await join(store, keys, "n1")
    await state.designate("n1", Role.BACKUP)
    await m.deregister()
    node = await state.get_node("n1")
    assert not node.alive and node.designation.role is Role.BACKUP


async def test_a_lost_lease_is_noticed_and_the_node_registers_again(
    store: EtcdStore, keys: Keys, state: ClusterState
) -> None:
    m = await join(store, keys, "n1", ttl_s=1)
    assert m.lease is not None
    await store.revoke(m.lease)  # as if etcd expired it while we were paused
    stop = asyncio.Event()
    task = asyncio.create_task(m.run(stop))
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if (await state.get_node("n1")).alive:
                break
        assert (await state.get_node("n1")).alive
    finally:
        stop.set()
        await task


async def test_designating_an_unknown_node_needs_force(state: ClusterState) -> None:
    with pytest.raises(NotFound, match="node 'ghost' is unknown: it never registered"):
        await state.designate("ghost", Role.PRIMARY)
    assert (await state.list_nodes())[0] == []
    designation, warnings = await state.designate("ghost", Role.PRIMARY, force=True)
    assert designation.role is Role.PRIMARY
    assert warnings == [
        "node 'ghost' has never registered; the designation is stored and "
        "takes effect when it joins"
    ]
    node = await state.get_node("ghost")
    assert not node.alive and node.designation.role is Role.PRIMARY


async def test_designations_and_serving_states_round_trip(
    store: EtcdStore, keys: Keys, state: ClusterState
) -> None:
    await join(store, keys, "n1")
    for role in Role:
        assert (await state.designate("n1", role))[0].role is role
        assert (await state.get_node("n1")).designation.role is role
    for serving in Serving:
        assert (await state.set_serving("n1", serving)).serving is serving
    d = await state.set_serving("n1", Serving.DRAINING, weight=7)
    assert (
        (await state.get_node("n1")).designation
        == d
        == Designation("n1", Role.NONE, Serving.DRAINING, 7)
    )
    assert (await state.set_serving("n1", Serving.ENABLED)).weight == 7  # weight kept


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.set_serving("nobody", Serving.ENABLED), "node 'nobody' is unknown"),
        (lambda s: s.set_serving("n1", Serving.ENABLED, weight=-1), "weight: -1 is not in"),
        (lambda s: s.set_serving("n1", "paused"), "serving: 'paused' is not one of"),
        (lambda s: s.designate("n1", "leader"), "role: 'leader' is not one of"),
        (lambda s: s.designate("Bad Id", Role.NONE), "node_id: 'Bad Id' is not a valid name"),
    ],
)
async def test_bad_designation_input_is_rejected_and_changes_nothing(
    store: EtcdStore,
    keys: Keys,
    state: ClusterState,
    call,
    error: str,  # type: ignore[no-untyped-def]
) -> None:
    await join(store, keys, "n1")
    before = await store.get_prefix(keys.prefix())
    with pytest.raises((ValidationError, NotFound), match=error):
        await call(state)
    assert await store.get_prefix(keys.prefix()) == before


async def test_service_create_update_unchanged_and_delete(state: ClusterState) -> None:
    spec = ServiceSpec("web", "10.0.0.1", 80)
    assert (await state.apply_service(spec)).result == "created"
    assert (await state.apply_service(spec)).result == "unchanged"
    changed = ServiceSpec("web", "10.0.0.1", 80, pool=Pool(nodes=("n1",)))
    result = await state.apply_service(changed)
    assert result.result == "updated"
    assert result.warnings == ("pool names node 'n1', which has never registered",)
    assert await state.get_service("web") == changed
    assert await state.list_services() == [changed]
    await state.delete_service("web")
    with pytest.raises(NotFound, match="service 'web' does not exist"):
        await state.get_service("web")
    with pytest.raises(NotFound):
        await state.delete_service("web")


async def test_invalid_or_conflicting_service_is_rejected_and_nothing_is_stored(
    store: EtcdStore, keys: Keys, state: ClusterState
) -> None:
    await state.apply_service(ServiceSpec("web", "10.0.0.1", 80))
    before = await store.get_prefix(keys.prefix())
    with pytest.raises(ValidationError, match=r"services.bad.port: 70000 is not in 1..65535"):
        await state.apply_service(ServiceSpec("bad", "10.0.0.1", 70000))
    with pytest.raises(ValidationError, match="10.0.0.1:80 is already used by service 'web'"):
        await state.apply_service(ServiceSpec("api", "10.0.0.1", 80))
    assert await store.get_prefix(keys.prefix()) == before
    await state.apply_service(ServiceSpec("api", "10.0.0.1", 8080))  # same VIP, other port


async def test_events_arrive_in_revision_order_with_their_payloads(
    store: EtcdStore, keys: Keys, state: ClusterState
) -> None:
    start = (await state.status()).revision + 1
    m = await join(store, keys, "n1")
    await state.designate("n1", Role.PRIMARY)
    await state.apply_service(ServiceSpec("web", "10.0.0.1", 80))
    await state.delete_service("web")
    await m.deregister()
    events = []
    async for event in state.events(start):
        events.append(event)
        if event.type == EventType.NODE_LEFT:
            break
    assert [(e.type, e.subject) for e in events] == [
        (EventType.NODE_JOINED, "n1"),
        (EventType.DESIGNATION_CHANGED, "n1"),  # created with defaults on first registration
        (EventType.DESIGNATION_CHANGED, "n1"),
        (EventType.SERVICE_APPLIED, "web"),
        (EventType.SERVICE_DELETED, "web"),
        (EventType.NODE_LEFT, "n1"),
    ]
    assert [e.revision for e in events] == sorted({e.revision for e in events})
    assert events[0].registration is not None and events[0].registration.node_id == "n1"
    assert events[2].designation is not None and events[2].designation.role is Role.PRIMARY
    assert events[3].service == ServiceSpec("web", "10.0.0.1", 80)


async def test_status_counts_nodes_and_services(
    store: EtcdStore, keys: Keys, state: ClusterState
) -> None:
    await join(store, keys, "n1")
    await state.apply_service(ServiceSpec("web", "10.0.0.1", 80))
    status = await state.status()
    assert [n.node_id for n in status.nodes] == ["n1"]
    assert status.services == 1 and status.answered_by == "test"
    assert status.etcd_endpoints == store.endpoints
    assert keys.prefix(Kind.SERVICE).startswith(keys.prefix())


async def test_a_node_that_cannot_announce_a_vip_is_never_made_primary_or_backup(
    store: EtcdStore, keys: Keys, state: ClusterState
) -> None:
    from dataclasses import replace

    from cluster.documents import record_to_doc
    from cluster.snapshot import encode

    far = replace(registration("n3"), announces=("10.9.3.0/24",))
    await store.put(keys.node("n3"), encode(record_to_doc(far)))
    await store.put(keys.designation("n3"), b'{"role": "none"}')
    await state.apply_service(ServiceSpec("web", "10.0.0.1", 80))
    for role in (Role.PRIMARY, Role.BACKUP):
        with pytest.raises(ValidationError, match=r"n3 cannot announce 10\.0\.0\.1"):
            await state.designate("n3", role)
    assert (await state.get_node("n3")).designation.role is Role.NONE
    near = replace(far, announces=("10.0.0.0/24",))
    await store.put(keys.node("n3"), encode(record_to_doc(near)))
    designation, _ = await state.designate("n3", Role.BACKUP)
    assert designation.role is Role.BACKUP
