"""The leader's heartbeat, and a backup's patience with a leader that has gone silent.

A hung leader (SIGSTOP, a frozen VM) answers nothing, yet its lease lives until etcd expires it:
the TTL after its last refresh plus up to 0.5 s of etcd's lessor tick (1.0-1.5 s with the
shortest lease etcd grants). The heartbeat replaces that wait with a shorter one both sides
can prove:

- The leader writes `leader-beat` (its term, under its lease, fenced on the leader key) every
  `beat_s` (a beat not taken within `beat_timeout_s` is retried at once, so a member that
  vanished costs one timeout, not a window), and counts itself alive until the send time of
  its last written beat plus `silence_s`. Past that it answers no ARP and places nothing
  (`LeaderLease.may_serve`), unless it is stranded from etcd (static stability: it then yields
  to the next leader's announcement, as before). A beat that cannot reach etcd strands it;
  one refused by the fence means another term holds the leader key: the election loop is
  woken and steps down.
- A backup notes when it saw each beat of the current term. When it has seen none for
  `silence_s + margin_s`, while its own reads of etcd were answered promptly all that time, the
  leader has stopped serving (its window ended `silence_s` after a send that came before our
  sighting), so the backup deletes the leader key in a transaction that compares the beat's mod
  revision (a beat written meanwhile makes it fail) and the leader key's create revision, and
  revokes the old lease. It then campaigns at once: it does not wait for the silent primary.

Both use the monotonic clocks of their own hosts; `margin_s` covers their drift over a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog

from cluster.config import ElectionConfig
from cluster.errors import StoreError
from cluster.keys import Keys
from cluster.leadership import LeaderLease
from cluster.snapshot import Snapshot
from cluster.store.base import Compare, Delete, LeaseId, Put, Store

log = structlog.get_logger()
# The leader compacts etcd's history to the revision it wrote this long ago (as kube-apiserver
# does): its heartbeat alone adds ten revisions a second, which uncompacted would fill etcd's
# default 2 GiB quota in about three weeks and stop every write.
COMPACT_EVERY_S = 300.0


class Heartbeat:
    """The leader side: one fenced beat every `beat_s` while this node leads."""

    def __init__(self, store: Store, keys: Keys, lease: LeaderLease, cfg: ElectionConfig) -> None:
        self.store, self.keys, self.lease, self.cfg = store, keys, lease, cfg
        self.beats = 0  # written, for /metrics and tests
        self.failed = 0  # not written: etcd unreachable
        self.failing = 0  # in a row (logged at the first and every 25th)
        self.mark: tuple[float, int] | None = None  # (monotonic, revision) of a recent beat
        self.compacting: asyncio.Task[None] | None = None

    async def run(self, strand: Callable[[], Awaitable[None]], wake: asyncio.Event) -> None:
        while True:
            if self.lease.leading and not await self.beat(strand, wake):
                continue  # at once: the store sends the retry to its next member
            await asyncio.sleep(self.cfg.beat_s)

    async def beat(self, strand: Callable[[], Awaitable[None]], wake: asyncio.Event) -> bool:
        """One beat; False when etcd did not take it in time (the caller retries at once)."""
        lease, revision, term = self.lease.lease, self.lease.leader_revision, self.lease.term
        if lease is None:
            return True
        sent = time.monotonic()
        guard = Compare(self.keys.leader, "create", "==", revision)
        try:
            async with asyncio.timeout(self.cfg.beat_timeout_s):
                result = await self.store.txn([guard], [Put(self.keys.beat, b"%d" % term, lease)])
        except (StoreError, TimeoutError) as e:
            self.failed, self.failing = self.failed + 1, self.failing + 1
            if self.failing % 25 == 1:
                log.warning("leader_beat_failed", term=term, in_a_row=self.failing,
                            reason=str(e) or type(e).__name__)  # fmt: skip
            await strand()
            if isinstance(e, StoreError):
                await asyncio.sleep(self.cfg.beat_s)  # it answered (no): do not spin
            return False
        if self.lease.leader_revision != revision:
            return True  # stepped down meanwhile
        self.failing = 0
        if result.succeeded:
            self.beats += 1
            self.lease.beat_until = max(self.lease.beat_until, sent + self.cfg.silence_s)
            self._compact_history(result.revision)
        else:
            wake.set()  # another term holds the leader key: the loop steps down
        return True

    def _compact_history(self, revision: int) -> None:
        """Every COMPACT_EVERY_S, compact to the revision marked then (in the background)."""
        now = time.monotonic()
        if self.mark is None:
            self.mark = (now, revision)
        elif now - self.mark[0] >= COMPACT_EVERY_S and (
            self.compacting is None or self.compacting.done()
        ):
            old, self.mark = self.mark[1], (now, revision)
            self.compacting = asyncio.create_task(self._compact(old))

    async def _compact(self, revision: int) -> None:
        try:
            await self.store.compact(revision)
        except StoreError as e:  # compacted already (by etcd's own auto-compaction), or down
            log.info("etcd_compaction_skipped", revision=revision, reason=str(e))
            return
        log.info("etcd_compacted", revision=revision)


class SilenceWatch:
    """The backup side: when the current leader's beats stopped, and the proof to act on it."""

    def __init__(self, store: Store, keys: Keys, cfg: ElectionConfig) -> None:
        self.store, self.keys, self.cfg = store, keys, cfg
        self.revision = 0  # the newest beat seen (mod revision) ...
        self.seen_at = 0.0  # ... and when (monotonic)
        self.healthy_since = 0.0  # our reads of etcd have been prompt since then
        self.last_read = 0.0
        self.silenced: dict[str, float] = {}  # node -> until: deposed as silent, not waited for
        self.due_at = float("inf")  # monotonic: when the leader last looked at counts as silent
        self.replaced = 0  # leader keys freed, for /metrics

    def saw_beat(self, revision: int) -> None:
        if revision > self.revision:
            self.revision, self.seen_at = revision, time.monotonic()

    def read(self, ok: bool, took_s: float) -> None:
        """One read of etcd by this node's loop: slow, failed or long after the last one, it
        restarts the patience (etcd itself may be what delays the beats)."""
        now = time.monotonic()
        gap = now - self.last_read > 2 * self.cfg.loop_s + self.cfg.retry_s
        if not ok or took_s > self.cfg.beat_s or gap:
            self.healthy_since = now
        if ok:
            self.last_read = now

    def silent_nodes(self) -> frozenset[str]:
        now = time.monotonic()
        self.silenced = {n: until for n, until in self.silenced.items() if until > now}
        return frozenset(self.silenced)

    def silent(self, view: Snapshot) -> bool:
        """Whether the current leader (not us) has beaten in its term and then been silent for
        longer than its own window, while etcd answered us promptly."""
        leader = view.leader
        self.due_at = float("inf")
        if leader is None or not view.leader_lease or view.beat_term != leader.term:
            return False
        self.saw_beat(view.beat_revision)
        self.due_at = max(self.seen_at, self.healthy_since) + self.cfg.silence_s + self.cfg.margin_s
        return time.monotonic() > self.due_at

    def due_in(self) -> float:
        """Seconds until the leader last looked at would count as silent, for the loop's wait;
        infinite once that moment passed (the next cycle looks again: no spinning)."""
        left = self.due_at - time.monotonic()
        return left if left > 0 else float("inf")

    async def replace(self, view: Snapshot) -> bool:
        """Delete the leader's key if it is silent and did not beat meanwhile; True when done."""
        if not self.silent(view):
            return False
        assert view.leader is not None
        guards = [
            Compare(self.keys.leader, "create", "==", view.leader_revision),
            Compare(self.keys.beat, "mod", "==", self.revision),
        ]
        try:
            deleted = (await self.store.txn(guards, [Delete(self.keys.leader)])).succeeded
        except StoreError as e:
            log.warning("silent_leader_not_replaced", reason=str(e))
            return False
        if not deleted:
            self.seen_at = time.monotonic()  # it beat, or the key moved: start over
            return False
        silent_ms = round((time.monotonic() - self.seen_at) * 1000)
        log.warning(
            "leader_silent",
            leader=view.leader.node_id,
            term=view.leader.term,
            reason=f"no heartbeat for {silent_ms} ms while etcd answered promptly",
        )
        self.silenced[view.leader.node_id] = time.monotonic() + self.cfg.ttl_s
        self.replaced += 1
        with contextlib.suppress(StoreError, TimeoutError):
            async with asyncio.timeout(self.cfg.retry_s):
                await self.store.revoke(LeaseId(view.leader_lease))
        return True
