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
from datapath.protocol import DesiredState

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


async def test_a_node_gone_from_etcd_stays_trusted_for_a_while() -> None:
    """A crashed primary returns and leads within a second of registering again, before every
    server has synced its new registration: its address stays trusted TRUST_LINGER_S after its
    registration lapsed (else the first connections it places are dropped as untrusted)."""
    from cluster.forwarding import TRUST_LINGER_S

    fw, dp, _ = await forwarder([0])
    await fw.sync()
    await fw.state.store.delete(KEYS.node("n2"))  # its lease lapsed
    await fw.sync()
    assert dp.programmed().trusted == {"10.0.1.11", "10.0.2.12"}
    fw.seen_at["n2"] -= TRUST_LINGER_S  # long gone
    await fw.sync()
    assert dp.programmed().trusted == {"10.0.1.11"}


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


async def test_a_deposed_leader_fences_its_kept_tables_once_another_node_leads() -> None:
    fw, dp, _ = await forwarder([1])
    await fw.hold(frozenset({"10.0.0.1"}))
    await fw.release()
    await fw.sync()
    kept = dp.programmed().scheduler
    assert kept is not None and not kept.fenced  # a planned handover's gap: still placing
    assert not kept.listening  # but its L7 listeners are gone: new L7 SYNs are dropped
    fw.deposed()  # another node's announcement was heard
    await fw.sync()
    fenced = dp.programmed().scheduler
    assert fenced is not None and fenced.fenced and fenced.services == kept.services


async def test_a_new_leader_starts_from_the_rings_its_predecessor_stored() -> None:
    """The rings stay as inherited (a node gone from etcd included, at its last address) so
    that connections no node could list still hash to their server."""
    fw, dp, _ = await forwarder([1])
    inherited = {"web": {"n1": 500, "n2": 1000, "n9": 250}}
    # registered once, gone now (its lease expired)
    fw.seen["n9"] = Registration("n9", "10.0.3.19:7700", "h", 1, "t", time.time())
    await fw.state.store.put(KEYS.ring("web"), encode({"weights": inherited["web"]}))
    await fw.hold(frozenset({"10.0.0.1"}))
    tables = dp.programmed().scheduler
    assert tables is not None
    assert dict(tables.services[0].weights) == inherited["web"]
    assert ("n9", "10.0.3.19") in tables.backends
    fw.scheduler.frozen_until = 0.0  # the take-over window is over: weights follow load
    await fw.sync()
    tables = dp.programmed().scheduler
    assert tables is not None and "n9" not in dict(tables.services[0].weights)


async def test_the_leader_publishes_the_rings_it_programs() -> None:
    published: list[dict[str, dict[str, int]]] = []

    async def publish(weights: dict[str, dict[str, int]], stored: object) -> None:
        published.append(weights)

    fw, _, _ = await forwarder([1])
    fw.publish_rings = publish
    await fw.hold(frozenset({"10.0.0.1"}))
    assert published and set(published[-1]) == {"web"}


async def test_a_node_that_did_not_answer_is_asked_later_and_at_once_when_it_returns() -> None:
    """A leader lists the connections of nodes it could not list, backing off while they do not
    answer (no address here answers) and asking again at once when one leaves etcd and comes
    back (a node cut off for longer than its lease)."""
    fw, _, _ = await forwarder([1])
    await fw.hold(frozenset({"10.0.0.1"}))  # the take-over asks every other node: none answers
    assert fw.list_failures == {"n1": 0, "n2": 1} and fw.listed == {"n1"}  # itself: read here
    assert fw.list_tried["n2"] > time.monotonic() + 1  # backing off: 2 s
    fw._relist(await fw.state.snapshot())
    assert fw.relisting is None  # nothing due yet
    registration = await fw.state.store.get(KEYS.node("n2"))
    assert registration is not None
    await fw.state.store.delete(KEYS.node("n2"))  # n2's lease lapsed: it is cut off
    fw._relist(await fw.state.snapshot())
    assert "n2" not in fw.list_tried and "n2" not in fw.list_failures
    await fw.state.store.put(KEYS.node("n2"), registration.value)  # back
    fw._relist(await fw.state.snapshot())
    assert fw.relisting is not None
    await fw.relisting
    assert fw.list_failures["n2"] == 1 and fw.list_tried["n2"] > time.monotonic() + 1
    done = fw.relisting
    fw.list_tried["n1"] = 0.0  # due, but a leader never relists itself (its frozen L7 sockets)
    fw._relist(await fw.state.snapshot())
    assert fw.relisting is done  # nothing new started


async def test_a_step_down_during_a_sync_leaves_tables_and_listeners_in_agreement() -> None:
    """A sync that applied a leader's tables (which pass L7 SYNs to this node) must not then
    stop the L7 listeners because the node stepped down meanwhile: each SYN in between would
    be reset (seen in the compose demo). The step-down's own sync fences first."""
    fw, dp, _ = await forwarder([1])
    await fw.hold(frozenset({"10.0.0.1"}))
    listening: list[bool] = []

    class Listeners:  # the L7 handoff's side of a sync: which listeners it keeps
        async def update(self, snap: object, leading: bool) -> None:
            listening.append(leading)

    fw.handoff = Listeners()  # type: ignore[assignment]
    apply = dp.apply

    async def apply_then_step_down(desired: DesiredState) -> None:
        await apply(desired)
        fw.leading = False  # release() runs while this sync awaits

    dp.apply = apply_then_step_down  # type: ignore[method-assign]
    await fw.sync()
    assert dp.programmed().scheduler is not None and listening == [True]
