"""This node's hold on the leader key, and the VIPs it holds while that hold is surely valid.

`LeaderLease` is written only by the RoleManager (cluster/election.py) and read by whoever must
know whether this node leads right now: the scheduler (its term), the VIP holder (may it answer
ARP), `VipCustody`. `VipCustody` holds the VIPs through a `VipHolder` and withdraws them
`margin_s` before the lease could expire anywhere, whatever the election loop is doing.

Static stability (README "Election and VIPs"): a leader that loses etcd keeps its VIPs past its
lease (`stranded`) until another node announces one of them on the segment (a gratuitous ARP:
that node holds the lease now) or etcd answers again; only then does it let go.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

import structlog

from cluster.store.base import LeaseId

log = structlog.get_logger()


@dataclass
class LeaderLease:
    margin_s: float
    lease: LeaseId | None = None
    leader_revision: int = 0  # the leader key's create revision: the fencing token; 0: none
    term: int = 0  # the term this node leads, 0 when it does not
    valid_until: float = 0.0  # monotonic: send time of the last refresh + TTL
    beat_until: float = 0.0  # monotonic: send time of the last heartbeat + silence_s
    # Static stability: etcd became unreachable while this node led, and no other node has
    # announced one of its VIPs since. It keeps serving with what it has (RoleManager.step).
    stranded: bool = False

    @property
    def leading(self) -> bool:
        return self.leader_revision != 0

    def valid(self) -> bool:
        """True while this node's leader lease surely has not expired anywhere."""
        return self.leading and time.monotonic() < self.valid_until - self.margin_s

    def beating(self) -> bool:
        """True while no backup can have found this leader silent (cluster/heartbeat.py)."""
        return self.leading and time.monotonic() < self.beat_until

    def may_hold(self) -> bool:
        """Whether this node may keep its VIPs plumbed and its tables programmed: its lease is
        surely valid, or it leads stranded from etcd and no one else has claimed a VIP."""
        return self.valid() or (self.leading and self.stranded)

    def may_serve(self) -> bool:
        """Whether it may also answer ARP for its VIPs and place new connections: besides,
        its heartbeat is current (a leader that merely stalled past it serves again at its
        next beat, unless a backup found it silent meanwhile), or it is stranded."""
        return self.may_hold() and (self.beating() or self.stranded)

    def current_term(self) -> int:
        """The term this node leads and may serve now; 0 otherwise (past its lease, deposed)."""
        return self.term if self.may_serve() else 0

    def take(
        self,
        lease: LeaseId,
        revision: int,
        term: int,
        valid_until: float,
        beat_until: float | None = None,
    ) -> None:
        self.lease, self.leader_revision, self.term = lease, revision, term
        self.valid_until = valid_until
        self.beat_until = valid_until if beat_until is None else beat_until

    def drop(self) -> LeaseId | None:
        """Stop leading; return the lease to revoke (None if there was none)."""
        lease, self.lease, self.leader_revision, self.term = self.lease, None, 0, 0
        self.stranded = False
        return lease


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


class VipCustody:
    """Holds VIPs only while the leader lease is surely valid."""

    def __init__(self, holder: VipHolder, lease: LeaderLease) -> None:
        self.holder, self.lease = holder, lease
        self.held: frozenset[str] = frozenset()
        # The holder was told to hold, maybe nothing (a leader of no service yet): it must be
        # told to release too, or it goes on acting as the leader's (its L7 listeners, its
        # scheduler tables) after this node stepped down.
        self.holding = False

    async def hold(self, vips: frozenset[str]) -> None:
        if not self.lease.valid():
            return
        self.holding = True
        await self.holder.hold(vips)
        if not self.lease.may_hold():
            # Paused or slowed while plumbing: the lease may have expired meanwhile. The holder
            # answered nothing without it; now take the addresses away too.
            self.held = vips
            await self.release()
            return
        if vips != self.held:
            log.info("vips_held", vips=sorted(vips))
        self.held = vips

    async def release(self) -> None:
        held, self.held = self.held, frozenset()  # first, so a concurrent caller sees it done
        holding, self.holding = self.holding, False  # held VIPs imply holding
        if holding:
            await self.holder.release()
        if held:
            log.info("vips_released", vips=sorted(held))

    async def watchdog(self, wake: asyncio.Event) -> None:
        """Withdraw the VIPs before the lease could expire (unless stranded from etcd),
        whatever the loop is doing."""
        while True:
            if self.held and not self.lease.may_hold():
                await self.release()
                wake.set()
            await asyncio.sleep(self.lease.margin_s / 2)
