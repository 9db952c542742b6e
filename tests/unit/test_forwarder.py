"""The Forwarder between the election and a datapath, on the in-memory store and the
FakeDatapath (both contract-tested against the real ones)."""

from __future__ import annotations

import time

from cluster.documents import record_to_doc
from cluster.forwarding import Forwarder
from cluster.keys import Keys
from cluster.leadership import RecordedVips
from cluster.model import Registration, ServiceSpec
from cluster.scheduler import Scheduler
from cluster.snapshot import encode
from cluster.state import ClusterState
from cluster.store.memory import MemoryStore
from datapath.fake import FakeDatapath

KEYS = Keys()


async def forwarder(term: list[int]) -> tuple[Forwarder, FakeDatapath, RecordedVips]:
    store = MemoryStore()
    for n, addr in (("n1", "10.0.1.11"), ("n2", "10.0.2.12")):
        reg = Registration(n, f"{addr}:7700", "h", 1, "t", time.time())
        await store.put(KEYS.node(n), encode(record_to_doc(reg)))
    state = ClusterState(store, KEYS, "n1")
    await state.apply_service(ServiceSpec("web", "10.0.0.1", 80))
    dp, vips = FakeDatapath("10.0.1.11"), RecordedVips()
    return Forwarder(dp, state, Scheduler(state, lambda: term[0]), vips, "n1"), dp, vips


async def test_a_follower_serves_every_vip_and_trusts_every_node_but_schedules_nothing() -> None:
    fw, dp, _ = await forwarder([0])
    await fw.sync()
    state = dp.programmed()
    assert state.vips == {"10.0.0.1"} and state.trusted == {"10.0.1.11", "10.0.2.12"}
    assert state.scheduler is None


async def test_a_new_leader_programs_its_tables_before_it_holds_the_vips() -> None:
    fw, dp, vips = await forwarder([1])
    await fw.sync()
    await fw.hold(frozenset({"10.0.0.1"}))
    assert vips.held == {"10.0.0.1"}
    tables = dp.programmed().scheduler
    assert tables is not None and [s.key for s in tables.services] == [("10.0.0.1", 80)]
    assert dp.applied[-1].scheduler is not None


async def test_a_stepped_down_leader_keeps_its_tables_through_the_grace_window() -> None:
    fw, dp, vips = await forwarder([1])
    await fw.hold(frozenset({"10.0.0.1"}))
    await fw.release()
    await fw.sync()
    assert vips.held == frozenset()
    assert dp.programmed().scheduler is not None  # stale ARP entries still send it packets
