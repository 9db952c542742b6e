"""Election of the primary scheduler on etcd leases: Patroni's HA loop, cut down.

Every cycle is observe -> decide -> act: one snapshot of the cluster, the pure `decide()` of
cluster/decision.py, then the I/O for that one decision, one log line when the decision changes.

Safety rules:
- Only nodes designated primary or backup campaign, with a lease-bound create-if-absent of
  `leader`. A backup lets an alive, ready designated primary go first (`backup_delay_s`).
- Every leader write is fenced: a transaction that compares the leader key's create revision
  with the one this node created, so a deposed leader's late writes fail.
- The leader holds VIPs only while its lease is surely valid: `valid_until` is the send time of
  the last successful refresh plus the TTL; a watchdog withdraws the VIPs `margin_s` before that
  whatever the loop is doing, and `loop_s + 2 * retry_s < ttl_s` is checked at start.
- It beats every `beat_s` and serves only within `silence_s` of its last beat; a backup that
  sees no beat for longer frees the leader key without waiting for the lease (heartbeat.py).
- A planned handover writes `handover`, withdraws the VIPs, then revokes the lease; the target,
  watching the leader key, campaigns the moment it is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import structlog

from cluster.config import ElectionConfig
from cluster.decision import Action, Decision, decide
from cluster.documents import record_to_doc
from cluster.errors import LeaseExpired, StoreError
from cluster.heartbeat import Heartbeat, SilenceWatch
from cluster.histogram import Histogram
from cluster.keys import Keys, Kind
from cluster.leaderprobe import LeaderProbe
from cluster.leadership import LeaderLease, VipCustody, VipHolder
from cluster.model import Handover, LeaderRecord, Registration, Role, VipOwner
from cluster.snapshot import Snapshot, encode, read_snapshot
from cluster.store.base import Compare, Delete, EventKind, LeaseId, Put, Store

log = structlog.get_logger()


class RoleManager:
    """Runs the election for one node: observe, decide, act, once per cycle (`step`)."""

    def __init__(
        self,
        store: Store,
        keys: Keys,
        me: Registration,
        cfg: ElectionConfig,
        vips: VipHolder,
        node_lease: Callable[[], LeaseId | None],
        leader: LeaderLease | None = None,
    ) -> None:
        self.store, self.keys, self.me, self.cfg = store, keys, me, cfg
        self.node_lease = node_lease
        self.leader = leader or LeaderLease(cfg.margin_s)
        self.custody = VipCustody(vips, self.leader)
        self.probe = LeaderProbe(store, me.node_id, cfg.loop_s)
        self.heartbeat = Heartbeat(store, keys, self.leader, cfg)
        self.silence = SilenceWatch(store, keys, cfg)
        self.absent_since: float | None = None
        self.last: Decision | None = None
        self.wake = asyncio.Event()
        # After an unplanned takeover no automatic handover before this (keepalived's preempt
        # delay): a primary just back may still flap. An operator's later designation is obeyed.
        self.no_handover_until = 0.0
        self.takeover_revision = 0
        # What /metrics shows (cluster/metrics.py): the election's own counts.
        self.step_downs: Counter[str] = Counter()  # by cause
        self.handovers = 0  # planned handovers this node started
        self.keepalive = Histogram()  # leader lease refresh round trips
        self.read_at = 0.0  # monotonic: the last cycle that could read etcd (cluster/health.py)
        self.claimed = False  # another node announced one of our VIPs past our lease
        self.on_deposed: Callable[[], None] = lambda: None  # the forwarder fences its tables

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(self._watch())
            watchdog = tg.create_task(self.custody.watchdog(self.wake))
            beat = tg.create_task(self.heartbeat.run(self._strand, self.wake))
            try:
                while not stop.is_set():
                    self.wake.clear()  # before the step: a wake during it runs the next one
                    await self.step()
                    waiters = [asyncio.ensure_future(e.wait()) for e in (stop, self.wake)]
                    timeout = min(self.cfg.loop_s, self.silence.due_in() + 0.001)
                    await asyncio.wait(
                        waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                    for w in waiters:
                        w.cancel()
            finally:
                for task in (watcher, watchdog, beat):
                    task.cancel()
                await self._resign("the daemon is stopping", "stopping")

    async def step(self) -> Decision:
        """One cycle: read everything once, decide, act; return the decision."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.cfg.retry_s):
                kvs, revision = await self.store.get_prefix(self.keys.prefix())
        except (StoreError, TimeoutError) as e:
            self.silence.read(False, time.monotonic() - started)
            await self._strand()
            decision = Decision(Action.WAIT, f"etcd unreachable: {str(e) or type(e).__name__}")
            self._log(decision)
            return decision
        self.read_at = time.monotonic()
        self.silence.read(True, self.read_at - started)
        view = read_snapshot(kvs, revision, self.keys)
        await self._reconnect(view)
        decision = self._decide(view)
        self._log(decision, view)
        try:
            await self._act(decision, view)
        except (StoreError, TimeoutError) as e:
            log.warning("election_action_failed", action=str(decision.action), reason=str(e))
            await self._strand()
        return decision

    async def _strand(self) -> None:
        """etcd cannot be read. A leader keeps serving with what it has (static stability)
        unless another node has claimed one of its VIPs since its lease ran out."""
        if not self.leader.leading:
            return
        if self.claimed and not self.leader.beating():
            await self._resign("another node announced a VIP and etcd is unreachable", "deposed")
        elif not self.leader.stranded:
            self.leader.stranded = True
            log.warning("leader_stranded", term=self.leader.term,
                        reason="etcd unreachable: keeps its VIPs until another node announces "
                        "one or etcd answers")  # fmt: skip

    async def _reconnect(self, view: Snapshot) -> None:
        """etcd answers again: a stranded leader whose term holds the leader key refreshes its
        lease (it may have outlived the outage), stranded until then: the VIP watchdog must not
        withdraw the VIPs of the lapsed lease meanwhile (its stack reset other nodes' flows)."""
        if not self.leader.stranded:
            return
        self.claimed = False
        if view.leader_revision == self.leader.leader_revision and not self.leader.valid():
            with contextlib.suppress(StoreError, TimeoutError, LeaseExpired):
                await self._refresh()
        self.leader.stranded = False  # only now: the VIP watchdog may run during the refresh
        log.info("leader_reconnected", term=self.leader.term, lease_valid=self.leader.valid())

    async def publish_rings(
        self, weights: dict[str, dict[str, int]], stored: dict[str, dict[str, int]]
    ) -> None:
        """Store the kernel weights this leader programs, for its successor (persistent keys,
        written only while this term holds the leader key)."""
        if not self.leader.valid():
            return
        ops: list[Put | Delete] = [
            Put(self.keys.ring(name), encode({"weights": w}))
            for name, w in sorted(weights.items())
            if w and stored.get(name) != w
        ]
        ops += [Delete(self.keys.ring(name)) for name in sorted(stored.keys() - weights.keys())]
        if ops:
            with contextlib.suppress(StoreError, TimeoutError):
                await self.fenced(ops)

    def vip_claimed(self, vip: str, mac: bytes) -> None:
        """Another node announced `vip` on the segment (datapath/vip.py hears it). Past this
        node's heartbeat window that is a new leader: stop serving at once (the loop resigns)."""
        if self.leader.beating():
            log.warning("vip_claimed_while_leading", vip=vip, by=mac.hex(":"))
            return
        self.on_deposed()
        if not self.leader.leading:
            return
        self.claimed, self.leader.stranded = True, False
        log.warning("vip_claimed", vip=vip, by=mac.hex(":"), term=self.leader.term)
        self.wake.set()

    def gone_nodes(self) -> frozenset[str]:
        """Leaders found dead or silent lately: nothing to wait for from them (flow recovery)."""
        return frozenset(self.probe.dead) | self.silence.silent_nodes()

    def _decide(self, view: Snapshot) -> Decision:
        now = time.monotonic()
        if view.leader is None:
            self.absent_since = self.absent_since or now
        else:
            self.absent_since = None
        return decide(
            view,
            self.me.node_id,
            self.leader.leader_revision,
            self.leader.valid(),
            now - (self.absent_since or now),
            self.cfg.backup_delay_s,
            self.probe.dead_nodes(view) | self.silence.silent_nodes(),
            now >= self.no_handover_until
            or max(view.designation_revisions.values(), default=0) > self.takeover_revision,
        )

    async def _act(self, d: Decision, view: Snapshot) -> None:
        if d.action == Action.KEEP:
            await self._keep(view, d.note)
        elif d.action == Action.CAMPAIGN:
            await self._campaign(view)
        elif d.action == Action.HAND_OVER:
            await self._hand_over(view, d.target)
        elif d.action == Action.STEP_DOWN:
            await self._resign(d.reason, d.cause)
        else:
            await self.custody.release()
        if not self.leader.leading:
            await self._candidacy(view)
            if view.role(self.me.node_id) != Role.NONE and (
                await self.silence.replace(view) or await self.probe.probe(view)
            ):
                self.wake.set()

    async def _candidacy(self, view: Snapshot) -> None:
        """Keep `candidates/<me>` (ready to lead) exactly while designated primary or backup."""
        key, me = self.keys.candidate(self.me.node_id), self.me.node_id
        wanted = view.role(me) != Role.NONE
        if wanted and me not in view.ready and (lease := self.node_lease()) is not None:
            await self.store.put(key, encode({"since_unix_s": time.time()}), lease)
        elif not wanted and me in view.ready:
            await self.store.delete(key)

    async def _refresh(self) -> None:
        assert self.leader.lease is not None
        sent = time.monotonic()
        async with asyncio.timeout(self.cfg.retry_s):
            await self.store.keepalive(self.leader.lease)
        self.leader.valid_until = sent + self.cfg.ttl_s
        self.keepalive.observe(time.monotonic() - sent)

    async def _keep(self, view: Snapshot, note: str) -> None:
        try:
            await self._refresh()
        except LeaseExpired:
            await self._resign("the leader lease expired", "lease_expired")
            return
        except (StoreError, TimeoutError) as e:
            log.warning("lease_refresh_failed", reason=str(e) or type(e).__name__)
            await self._strand()  # before the lease lapses: the watchdog must not withdraw
            return
        ops: list[Put | Delete] = []
        assert view.leader is not None
        assert self.leader.lease is not None
        if view.leader.note != note:
            record = encode(record_to_doc(replace(view.leader, note=note)))
            ops.append(Put(self.keys.leader, record, self.leader.lease))
        ops += self._vip_ops(view)
        if ops and not await self.fenced(ops):
            await self._resign(
                "a fenced write failed: another term holds the leader key", "fenced_write_failed"
            )
            return
        await self.custody.hold(view.vips)

    def _vip_ops(self, view: Snapshot) -> list[Put | Delete]:
        assert self.leader.lease is not None
        assert view.leader is not None
        ops: list[Put | Delete] = []
        for vip in sorted(view.vips):
            owner = VipOwner(vip, self.me.node_id, view.leader.term)
            if view.owners.get(vip) != owner:
                ops.append(Put(self.keys.vip(vip), encode(record_to_doc(owner)), self.leader.lease))
        ops += [Delete(self.keys.vip(vip)) for vip in sorted(set(view.owners) - view.vips)]
        return ops

    async def fenced(self, ops: list[Put | Delete]) -> bool:
        """Write `ops` only while this node's term holds the leader key (the fencing token)."""
        guard = Compare(self.keys.leader, "create", "==", self.leader.leader_revision)
        return (await self.store.txn([guard], ops)).succeeded

    async def _campaign(self, view: Snapshot) -> None:
        if view.vacant_leader_mod:
            await self._clear_vacant_leader(view)
            return
        granted_at = time.monotonic()
        lease, ttl_s = await self.store.grant_lease(self.cfg.ttl_s)
        term = view.term + 1
        record = LeaderRecord(self.me.node_id, self.me.endpoint, term, time.time())
        ops: list[Put | Delete] = [
            Put(self.keys.leader, encode(record_to_doc(record)), lease),
            Put(self.keys.term, str(term).encode()),
        ]
        handover = view.handover
        planned = handover is not None and handover.state == "started"
        if handover is not None and planned:
            ops.append(self._handover_outcome(handover, term))
        guards = [
            Compare(self.keys.leader, "create", "==", 0),
            Compare(self.keys.term, "mod", "==", view.term_mod_revision),
        ]
        result = await self.store.txn(guards, ops)
        if not result.succeeded:
            await self.store.revoke(lease)
            return
        self.leader.take(
            lease,
            result.revision,
            term,
            granted_at + min(ttl_s, self.cfg.ttl_s),
            granted_at + self.cfg.silence_s,
        )
        if not (planned and handover is not None and handover.to_node == self.me.node_id):
            self.no_handover_until = granted_at + self.cfg.preempt_delay_s
            self.takeover_revision = result.revision
        log.info("leader_acquired", term=term, lease_id=f"{lease:x}")
        leading = replace(view, leader=record, leader_revision=result.revision, term=term)
        if await self.fenced(self._vip_ops(leading)):
            await self.custody.hold(view.vips)

    def _handover_outcome(self, handover: Handover, term: int) -> Put:
        """A started handover ends with this campaign: completed if it was meant for us."""
        done = "completed" if handover.to_node == self.me.node_id else "aborted"
        outcome = replace(
            handover,
            state=done,
            new_term=term,
            new_leader=self.me.node_id,
            at_unix_s=time.time(),
        )
        return Put(self.keys.handover, encode(record_to_doc(outcome)))

    async def _clear_vacant_leader(self, view: Snapshot) -> None:
        """A leader key that is unreadable or held by no lease never expires: delete it, in a
        transaction that compares the revision we judged, so a leader elected meanwhile (and
        any other candidate's clearing) wins; the next cycle campaigns as usual."""
        guard = Compare(self.keys.leader, "mod", "==", view.vacant_leader_mod)
        if (await self.store.txn([guard], [Delete(self.keys.leader)])).succeeded:
            log.warning(
                "leader_key_cleared",
                reason="the leader key was unreadable or held by no lease",
                revision=view.vacant_leader_mod,
            )
        self.wake.set()

    async def _hand_over(self, view: Snapshot, target: str) -> None:
        assert view.leader is not None
        handover = Handover(self.me.node_id, target, view.leader.term, "started", time.time())
        if not await self.fenced([Put(self.keys.handover, encode(record_to_doc(handover)))]):
            await self._resign(
                "a fenced write failed: another term holds the leader key", "fenced_write_failed"
            )
            return
        log.info("handover_started", to=target, term=view.leader.term)
        self.handovers += 1
        await self._resign(f"handed over to {target}", "handover")

    async def _resign(self, reason: str, cause: str) -> None:
        """Withdraw the VIPs first, then give up the lease (best effort: it expires anyway)."""
        await self.custody.release()
        if not self.leader.leading:
            return
        lease = self.leader.drop()
        self.claimed = False
        self.step_downs[cause] += 1
        log.info("leader_stepped_down", reason=reason, cause=cause)
        if lease is not None:
            try:
                async with asyncio.timeout(self.cfg.retry_s):
                    await self.store.revoke(lease)
            except (StoreError, TimeoutError) as e:
                log.warning("lease_revoke_failed", reason=str(e))

    async def _watch(self) -> None:
        """Wake the loop on any change, so handovers and failovers do not wait for a tick.

        Health summaries are skipped: every agent writes one every 2 s and the election does not
        read them, so waking on them would make every node re-read everything N times a period.
        """
        health, beat = self.keys.prefix(Kind.HEALTH), self.keys.beat
        while True:
            try:
                async for event in self.store.watch_prefix(self.keys.prefix(), 0):
                    if event.kv.key == beat:
                        if event.kind == EventKind.PUT:
                            self.silence.saw_beat(event.kv.mod_revision)
                    elif not event.kv.key.startswith(health):
                        self.wake.set()
            except StoreError:
                await asyncio.sleep(self.cfg.loop_s)

    def _log(self, d: Decision, view: Snapshot | None = None) -> None:
        if self.last is not None and (d.action, d.reason) == (self.last.action, self.last.reason):
            return
        self.last = d
        log.info(
            "election_decided",
            decision=str(d.action),
            reason=d.reason,
            revision=view.revision if view else None,
        )
