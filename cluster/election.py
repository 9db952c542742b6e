"""Election of the primary scheduler on etcd leases: Patroni's HA loop, cut down.

Every cycle is observe -> decide -> act: one snapshot of the cluster (`View`), a pure `decide()`,
then the I/O for that one decision, and one log line when the decision changes.

Safety rules:
- Only nodes designated primary or backup campaign, with a lease-bound create-if-absent of
  `leader`. A backup lets an alive, ready designated primary go first (`backup_delay_s`).
- Every leader write is fenced: a transaction that compares the leader key's create revision
  with the one this node created, so a deposed leader's late writes fail.
- The leader holds VIPs only while its lease is surely valid: `valid_until` is the send time of
  the last successful refresh plus the TTL; a watchdog withdraws the VIPs `margin_s` before that
  whatever the loop is doing, and `loop_s + 2 * retry_s < ttl_s` is checked at start.
- A planned handover writes `handover`, withdraws the VIPs, then revokes the lease; the target,
  watching the leader key, campaigns the moment it is gone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

import structlog

from cluster.documents import record_to_doc
from cluster.errors import LeaseExpired, StoreError, ValidationError
from cluster.keys import Keys, Kind
from cluster.model import Handover, LeaderRecord, Registration, Role, VipOwner
from cluster.snapshot import Snapshot, encode, read_snapshot
from cluster.store.base import Compare, Delete, LeaseId, Put, Store

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class ElectionConfig:
    ttl_s: int = 1
    loop_s: float = 0.2
    retry_s: float = 0.3
    backup_delay_s: float = 0.3
    preempt_delay_s: float = 2.0  # after an unplanned takeover, keep leading at least this long
    margin_s: float = 0.1  # withdraw this long before the lease could expire

    @classmethod
    def for_ttl(cls, ttl_s: int) -> ElectionConfig:
        """Timings that scale with the lease: a cycle every ttl/5, etcd calls bounded by
        0.3 ttl, withdrawal 0.1 ttl before the lease could expire."""
        return cls(
            ttl_s,
            loop_s=ttl_s / 5,
            retry_s=0.3 * ttl_s,
            backup_delay_s=0.3 * ttl_s,
            preempt_delay_s=2.0 * ttl_s,
            margin_s=0.1 * ttl_s,
        )

    def __post_init__(self) -> None:
        if not self.loop_s + 2 * self.retry_s + self.margin_s < self.ttl_s:
            raise ValidationError(
                [
                    f"election timing: loop_s + 2 * retry_s + margin_s ({self.loop_s} + 2 * "
                    f"{self.retry_s} + {self.margin_s}) must be < ttl_s ({self.ttl_s}), or the "
                    "leader cannot step down before its lease expires elsewhere"
                ]
            )


class VipHolder(Protocol):
    """Where a leader's VIPs live on this node. Both calls are idempotent."""

    async def hold(self, vips: frozenset[str]) -> None:
        """Hold exactly these VIPs; announce (gratuitous ARP) the ones newly held."""
        ...

    async def release(self) -> None:
        """Hold no VIP. Must succeed without etcd."""
        ...


class RecordedVips:
    """No local plumbing: the VIPs are only recorded in etcd (nodes without an uplink)."""

    def __init__(self) -> None:
        self.held: frozenset[str] = frozenset()

    async def hold(self, vips: frozenset[str]) -> None:
        self.held = vips

    async def release(self) -> None:
        self.held = frozenset()


class Action(StrEnum):
    CAMPAIGN = "campaign"
    KEEP = "keep"
    HAND_OVER = "hand_over"
    STEP_DOWN = "step_down"
    FOLLOW = "follow"
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    target: str = ""
    note: str = ""  # for KEEP: why the leader leads against its designation


def handover_target(view: Snapshot, me: str, dead: frozenset[str]) -> str | None:
    """Who the leader should hand over to, by designation; None to keep leading."""
    role = view.role(me)
    others = sorted(n for n in view.ready - dead if n != me)
    primaries = [n for n in others if view.role(n) == Role.PRIMARY]
    if role != Role.PRIMARY and primaries:
        return primaries[0]
    if role == Role.NONE:
        backups = [n for n in others if view.role(n) == Role.BACKUP]
        return backups[0] if backups else None
    return None


def decide(
    view: Snapshot,
    me: str,
    my_leader_revision: int,
    lease_valid: bool,
    absent_for_s: float,
    backup_delay_s: float,
    dead: frozenset[str] = frozenset(),
    may_hand_over: bool = True,
) -> Decision:
    """The whole election policy, without I/O. `dead`: nodes known dead whose registration
    has not expired yet; they are neither waited for nor handed over to."""
    role = view.role(me)
    if my_leader_revision:
        if not lease_valid:
            return Decision(Action.STEP_DOWN, "the leader lease was not refreshed in time")
        if view.leader_revision != my_leader_revision:
            return Decision(Action.STEP_DOWN, "the leader key is gone or belongs to another term")
        target = handover_target(view, me, dead) if may_hand_over else None
        if target:
            return Decision(
                Action.HAND_OVER,
                f"{target} is designated {view.role(target)} "
                f"and ready; this node is designated {role}",
                target,
            )
        if role == Role.PRIMARY:
            return Decision(Action.KEEP, "designated primary")
        note = f"designated {role} but no other candidate is alive and ready, so it keeps leading"
        return Decision(Action.KEEP, note, note=note)
    if role == Role.NONE:
        return Decision(Action.FOLLOW, "designated none")
    if view.leader is not None:
        return Decision(Action.FOLLOW, f"{view.leader.node_id} leads (term {view.leader.term})")
    if role == Role.PRIMARY:
        return Decision(Action.CAMPAIGN, "designated primary and no leader")
    primary = [n for n in view.ready - dead if n != me and view.role(n) == Role.PRIMARY]
    if primary and absent_for_s < backup_delay_s:
        return Decision(Action.WAIT, f"designated primary {primary[0]} is ready; it goes first")
    return Decision(Action.CAMPAIGN, "designated backup and no leader")


class RoleManager:
    """Runs the election for one node and holds its VIPs while it leads."""

    def __init__(
        self,
        store: Store,
        keys: Keys,
        me: Registration,
        cfg: ElectionConfig,
        vips: VipHolder,
        node_lease: Callable[[], LeaseId | None],
    ) -> None:
        self.store, self.keys, self.me, self.cfg, self.vips = store, keys, me, cfg, vips
        self.node_lease = node_lease
        self.lease: LeaseId | None = None
        self.leader_revision = 0
        self.term = 0  # the term this node leads, 0 when it does not
        self.valid_until = 0.0
        self.absent_since: float | None = None
        self.last: Decision | None = None
        self.wake = asyncio.Event()
        self.held: frozenset[str] = frozenset()
        self.seen_alive_term = 0  # the last leader term whose API this node reached
        # After an unplanned takeover no automatic handover before this (keepalived's preempt
        # delay), so a primary that just came back does not take the VIPs while it may still be
        # flapping. An operator's designation change after the takeover is obeyed at once.
        self.no_handover_until = 0.0
        self.takeover_revision = 0
        # node id -> start time of its registration that outlived its dead process
        self.dead: dict[str, float] = {}

    @property
    def leading(self) -> bool:
        return self.leader_revision != 0

    def lease_valid(self) -> bool:
        """True while this node's leader lease surely has not expired anywhere."""
        return self.leading and time.monotonic() < self.valid_until - self.cfg.margin_s

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(self._watch())
            watchdog = tg.create_task(self._watchdog())
            try:
                while not stop.is_set():
                    await self._cycle()
                    self.wake.clear()
                    waiters = [asyncio.ensure_future(e.wait()) for e in (stop, self.wake)]
                    await asyncio.wait(
                        waiters, timeout=self.cfg.loop_s, return_when=asyncio.FIRST_COMPLETED
                    )
                    for w in waiters:
                        w.cancel()
            finally:
                watcher.cancel()
                watchdog.cancel()
                await self._resign("the daemon is stopping")

    async def _cycle(self) -> None:
        try:
            async with asyncio.timeout(self.cfg.retry_s):
                kvs, revision = await self.store.get_prefix(self.keys.prefix())
        except (StoreError, TimeoutError) as e:
            if self.leading and not self.lease_valid():
                await self._resign("etcd unreachable and the lease ran out")
            self._log(Decision(Action.WAIT, f"etcd unreachable: {str(e) or type(e).__name__}"))
            return
        view = read_snapshot(kvs, revision, self.keys)
        now = time.monotonic()
        if view.leader is None:
            self.absent_since = self.absent_since or now
        else:
            self.absent_since = None
        self.dead = {
            n: started
            for n, started in self.dead.items()
            if (r := view.registrations.get(n)) and r.started_at_unix_s == started
        }
        decision = decide(
            view,
            self.me.node_id,
            self.leader_revision,
            self.lease_valid(),
            now - (self.absent_since or now),
            self.cfg.backup_delay_s,
            frozenset(self.dead),
            now >= self.no_handover_until
            or max(view.designation_revisions.values(), default=0) > self.takeover_revision,
        )
        self._log(decision, view)
        try:
            await self._act(decision, view)
        except (StoreError, TimeoutError) as e:
            log.warning("election_action_failed", action=str(decision.action), reason=str(e))

    async def _act(self, d: Decision, view: Snapshot) -> None:
        if d.action == Action.KEEP:
            await self._keep(view, d.note)
        elif d.action == Action.CAMPAIGN:
            await self._campaign(view)
        elif d.action == Action.HAND_OVER:
            await self._hand_over(view, d.target)
        elif d.action == Action.STEP_DOWN:
            await self._resign(d.reason)
        else:
            await self._release_vips()
        if not self.leading:
            await self._candidacy(view)
            await self._probe_leader(view)

    async def _probe_leader(self, view: Snapshot) -> None:
        """Revoke a dead leader's lease rather than wait up to TTL + 0.5 s for etcd to expire it.

        Evidence of death: the leader's API port, which this node reached before in this term,
        refuses connections twice 50 ms apart. The API serves for a leader's whole term, so a
        live leader never refuses; a paused or cut-off one times out instead, and then only its
        lease expiry frees the key. (So a firewall must DROP, not REJECT, the API port.)
        """
        leader = view.leader
        if (
            leader is None
            or leader.node_id == self.me.node_id
            or not view.leader_lease
            or view.role(self.me.node_id) == Role.NONE
        ):
            return
        host, _, port = leader.endpoint.rpartition(":")
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(0.05)
            try:
                async with asyncio.timeout(self.cfg.loop_s):
                    _, writer = await asyncio.open_connection(host, int(port))
                writer.close()
                self.seen_alive_term = leader.term
                return
            except ConnectionRefusedError:
                continue
            except (OSError, TimeoutError, ValueError):
                return  # no proof either way
        if self.seen_alive_term != leader.term:
            return
        log.warning(
            "leader_dead",
            leader=leader.node_id,
            term=leader.term,
            reason="its API port refuses connections",
            lease_id=f"{view.leader_lease:x}",
        )
        if (registration := view.registrations.get(leader.node_id)) is not None:
            self.dead[leader.node_id] = registration.started_at_unix_s
        await self.store.revoke(LeaseId(view.leader_lease))
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
        assert self.lease is not None
        sent = time.monotonic()
        async with asyncio.timeout(self.cfg.retry_s):
            await self.store.keepalive(self.lease)
        self.valid_until = sent + self.cfg.ttl_s

    async def _keep(self, view: Snapshot, note: str) -> None:
        try:
            await self._refresh()
        except LeaseExpired:
            await self._resign("the leader lease expired")
            return
        except (StoreError, TimeoutError) as e:
            log.warning("lease_refresh_failed", reason=str(e))
            return
        ops: list[Put | Delete] = []
        assert view.leader is not None
        assert self.lease is not None
        if view.leader.note != note:
            ops.append(
                Put(
                    self.keys.leader,
                    encode(record_to_doc(replace(view.leader, note=note))),
                    self.lease,
                )
            )
        ops += self._vip_ops(view)
        if ops and not await self._fenced(ops):
            await self._resign("a fenced write failed: another term holds the leader key")
            return
        await self._hold(view.vips)

    def _vip_ops(self, view: Snapshot) -> list[Put | Delete]:
        assert self.lease is not None
        assert view.leader is not None
        ops: list[Put | Delete] = []
        for vip in sorted(view.vips):
            owner = VipOwner(vip, self.me.node_id, view.leader.term)
            if view.owners.get(vip) != owner:
                ops.append(Put(self.keys.vip(vip), encode(record_to_doc(owner)), self.lease))
        ops += [Delete(self.keys.vip(vip)) for vip in sorted(set(view.owners) - view.vips)]
        return ops

    async def _fenced(self, ops: list[Put | Delete]) -> bool:
        guard = Compare(self.keys.leader, "create", "==", self.leader_revision)
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
        planned = (
            handover is not None
            and handover.state == "started"
            and (handover.to_node == self.me.node_id)
        )
        if handover is not None and handover.state == "started":
            done = "completed" if handover.to_node == self.me.node_id else "aborted"
            ops.append(
                Put(
                    self.keys.handover,
                    encode(
                        record_to_doc(
                            replace(
                                handover,
                                state=done,
                                new_term=term,
                                new_leader=self.me.node_id,
                                at_unix_s=time.time(),
                            )
                        )
                    ),
                )
            )
        guards = [
            Compare(self.keys.leader, "create", "==", 0),
            Compare(self.keys.term, "mod", "==", view.term_mod_revision),
        ]
        result = await self.store.txn(guards, ops)
        if not result.succeeded:
            await self.store.revoke(lease)
            return
        self.lease, self.leader_revision, self.term = lease, result.revision, term
        if not planned:
            self.no_handover_until = granted_at + self.cfg.preempt_delay_s
            self.takeover_revision = result.revision
        self.valid_until = granted_at + min(ttl_s, self.cfg.ttl_s)
        log.info("leader_acquired", term=term, lease_id=f"{lease:x}")
        leading = replace(view, leader=record, leader_revision=result.revision, term=term)
        if await self._fenced(self._vip_ops(leading)):
            await self._hold(view.vips)

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
        if not await self._fenced([Put(self.keys.handover, encode(record_to_doc(handover)))]):
            await self._resign("a fenced write failed: another term holds the leader key")
            return
        log.info("handover_started", to=target, term=view.leader.term)
        await self._resign(f"handed over to {target}")

    async def _resign(self, reason: str) -> None:
        """Withdraw the VIPs first, then give up the lease (best effort: it expires anyway)."""
        await self._release_vips()
        if not self.leading:
            return
        lease, self.lease, self.leader_revision, self.term = self.lease, None, 0, 0
        log.info("leader_stepped_down", reason=reason)
        if lease is not None:
            try:
                async with asyncio.timeout(self.cfg.retry_s):
                    await self.store.revoke(lease)
            except (StoreError, TimeoutError) as e:
                log.warning("lease_revoke_failed", reason=str(e))

    async def _hold(self, vips: frozenset[str]) -> None:
        if not self.lease_valid():
            return
        await self.vips.hold(vips)
        if not self.lease_valid():
            # Paused or slowed while plumbing: the lease may have expired meanwhile. The holder
            # answered nothing without it; now take the addresses away too.
            self.held = vips
            await self._release_vips()
            return
        if vips != self.held:
            log.info("vips_held", vips=sorted(vips))
        self.held = vips

    async def _release_vips(self) -> None:
        held, self.held = self.held, frozenset()  # first, so a concurrent caller sees it done
        if held:
            await self.vips.release()
            log.info("vips_released", vips=sorted(held))

    async def _watchdog(self) -> None:
        """Withdraw the VIPs before the lease could expire, whatever the loop is doing."""
        while True:
            if self.held and not self.lease_valid():
                await self._release_vips()
                self.wake.set()
            await asyncio.sleep(self.cfg.margin_s / 2)

    async def _watch(self) -> None:
        """Wake the loop on any change, so handovers and failovers do not wait for a tick.

        Health summaries are skipped: every agent writes one every 2 s and the election does not
        read them, so waking on them would make every node re-read everything N times a period.
        """
        health = self.keys.prefix(Kind.HEALTH)
        while True:
            try:
                async for event in self.store.watch_prefix(self.keys.prefix(), 0):
                    if not event.kv.key.startswith(health):
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
