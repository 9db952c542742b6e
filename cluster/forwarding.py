"""Forwarding: keeps this node's datapath equal to what etcd and live placement say.

Every node is a receiver: the VIPs of all services bound on lo, and the encapsulation of every
registered node trusted (any node may be made scheduler on the fly, so trusting only the
current designations would race the election). The leader also programs the scheduler tables:
one Maglev ring per service from `Scheduler.service_weights()`, every registered node as a
possible backend.

`Forwarder` is also the leader's VipHolder in front of the real one, which orders a takeover
as the architecture asks: before the VIPs are announced, the new leader reads the connections
every node serves (`Datapath.ListConnections`), programs its tables and pins those connections to
their servers, so no established connection is sent elsewhere by the ring. After losing the
lead, the last tables stay programmed for STEP_DOWN_GRACE_S: packets a stale ARP entry still
sends here are forwarded rather than reset. Once another node leads (etcd says so, or its
gratuitous ARP is heard) they are fenced: known flows are forwarded, new connections dropped
(the client's SYN retry reaches the new leader) rather than placed by a deposed leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TypeAlias

import grpc
import structlog

from cluster.api.v1 import cluster_pb2 as pb
from cluster.api.v1 import cluster_pb2_grpc
from cluster.config import parse_hostport
from cluster.errors import StoreError, ValidationError
from cluster.l7 import channel as handoff_channel
from cluster.l7.handoff import L7Handoff
from cluster.leadership import VipHolder
from cluster.model import Mode, Registration, Role
from cluster.scheduler import Scheduler
from cluster.snapshot import Snapshot
from cluster.state import ClusterState
from cluster.tls import Access, Identity, TlsFiles, channel
from datapath import layout, maglev
from datapath.errors import DatapathError
from datapath.netlink import served_flows
from datapath.protocol import Datapath, DesiredState, Flow, SchedulerTables, VipService

log = structlog.get_logger()
Rings: TypeAlias = dict[str, dict[str, int]]


async def _no_publish(weights: Rings, stored: Rings) -> None:
    return None


PERIOD_S = 0.5
STEP_DOWN_GRACE_S = 5.0
# A node that does not answer in time (hung, busy) is not waited for, and one the election found
# dead or silent is not asked: its connections hash to it anyway, through the ring inherited
# from the last leader (Scheduler.take_over).
RECOVERY_TIMEOUT_S = 0.2
# A node's address stays trusted (its encapsulated packets accepted) this long after its
# registration lapsed: a crashed primary that returns leads again within a second of
# registering, before every server has synced its new registration (PERIOD_S), and the first
# connections it placed were dropped as untrusted (chaos: the hand-back after a leader crash).
TRUST_LINGER_S = 60.0
HANDOFF_S = 1.5  # a stopping ex-leader answers ListConnections this long after stepping down
# A leader lists the connections of a node it could not list (it was cut off, hung, or gone from
# etcd and back) at most this often: its retransmissions must reach it, not the ring's choice.
RELIST_S = 1.0  # doubled after each unanswered try, up to RELIST_MAX_S
RELIST_MAX_S = 30.0


def node_address(r: Registration) -> str:
    """A node's datapath address: the host of the endpoint it advertises."""
    return parse_hostport(r.endpoint, f"node {r.node_id}'s endpoint")[0]


def desired_state(
    snap: Snapshot,
    weights: Rings | None,
    remembered: dict[str, str] | None = None,
    lately: frozenset[str] = frozenset(),
) -> DesiredState:
    """What this node's datapath should hold; `weights` only on the leader. `remembered`:
    addresses of nodes gone from etcd that an inherited ring still names (take-over); `lately`:
    addresses of nodes registered within TRUST_LINGER_S, trusted still."""
    vips, handed = snap.vips, snap.l7_endpoints
    registered = {n: node_address(r) for n, r in snap.registrations.items()}
    trusted = frozenset(registered.values()) | lately
    if weights is None:
        return DesiredState(vips, trusted, handed=handed)
    addresses = {**(remembered or {}), **registered}
    services = tuple(
        VipService(
            name,
            spec.vip,
            spec.port,
            spec.mode == Mode.L7,
            tuple(sorted((n, w) for n, w in weights.get(name, {}).items() if n in addresses)),
        )
        for name, spec in sorted(snap.services.items())
    )
    tables = SchedulerTables(tuple(sorted(addresses.items())), services)
    return DesiredState(vips, trusted, tables, handed)


class Forwarder:
    def __init__(
        self,
        datapath: Datapath,
        state: ClusterState,
        scheduler: Scheduler,
        vips: VipHolder,
        node_id: str,
        handoff: L7Handoff | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self.datapath, self.state, self.scheduler, self.vips = datapath, state, scheduler, vips
        self.node_id, self.handoff, self.tls = node_id, handoff, tls
        self.channel_server: asyncio.Server | None = None
        self.leading = False
        self.stepped_down_at: float | None = None
        self.synced_at = 0.0  # monotonic: the last time the datapath matched etcd
        self.other_leads = False  # since stepping down: another node leads (fence the tables)
        # Stores the leader's rings for its successor (RoleManager.publish_rings, fenced).
        self.publish_rings: Callable[[Rings, Rings], Awaitable[None]] = _no_publish
        self.seen: dict[str, Registration] = {}  # every node's last registration
        self.seen_at: dict[str, float] = {}  # node -> monotonic time it was last registered
        # Nodes the election found dead or silent (RoleManager.gone_nodes): not asked for flows.
        self.gone: Callable[[], frozenset[str]] = frozenset
        self.listed: set[str] = set()  # registered nodes whose connections this leader listed
        self.list_tried: dict[str, float] = {}  # node -> when it may be asked again
        self.list_failures: dict[str, int] = {}  # node -> unanswered tries in a row
        self.relisting: asyncio.Task[int] | None = None
        self.lock = asyncio.Lock()
        self.warmed: Rings = {}  # the stored rings last built in advance (_warm)
        self.warming: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()

    async def start(self, api_endpoint: str) -> None:
        """Attach the datapath; accept handoff channels next to the API (its port + 1)."""
        await self.datapath.start()
        if self.handoff is not None:
            self.channel_server = await handoff_channel.serve(
                self.handoff.adopter, api_endpoint, self.may_adopt, self.tls
            )

    async def may_adopt(self, identity: Identity | None, address: str) -> bool:
        """Whether a handoff from this peer may restore a connection here. Without TLS: a
        registered node's address. With TLS: the certificate of the node that leads now (our
        snapshot first; when it disagrees, as right after a failover, etcd decides)."""
        if identity is None:
            return self.tls is None and address in self.datapath.programmed().trusted
        if identity.access != Access.NODE:
            return False
        snap = self.handoff.snap if self.handoff else None
        if snap and snap.leader and snap.leader.node_id == identity.node_id:
            return True
        try:
            leader = await self.state.leader()
        except StoreError:
            return False
        return leader is not None and leader.node_id == identity.node_id

    async def close(self) -> None:
        if self.channel_server is not None:
            self.channel_server.close()
        if self.handoff is not None:
            await self.handoff.close()
        await self.datapath.close()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.wake.clear()  # before the sync: a wake during it runs the next one
            await self.sync()
            waiters = [asyncio.ensure_future(e.wait()) for e in (stop, self.wake)]
            await asyncio.wait(waiters, timeout=PERIOD_S, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()

    async def sync(self, snap: Snapshot | None = None) -> None:
        """Program the datapath from one snapshot (`snap`, or a fresh read); failures are logged
        and retried next tick."""
        async with self.lock:
            # One answer for the whole sync: a step-down (or take-over) midway must not stop the
            # L7 listeners after tables that still pass their SYNs to this node were applied
            # (each of those SYNs would be reset); it wakes the next sync, which fences first.
            leading = self.leading
            try:
                snap = snap or await self.state.snapshot()
                if not leading and snap.leader and snap.leader.node_id != self.node_id:
                    self.other_leads = True  # (while leading, a snapshot can lag our term)
                weights = await self.scheduler.service_weights(snap) if leading else None
                may_lead = snap.role(self.node_id) != Role.NONE
                if weights is None and may_lead and snap.rings != self.warmed:
                    self._warm(snap.rings)
                if weights is not None and weights != snap.rings:
                    await self.publish_rings(weights, snap.rings)
                self.seen |= snap.registrations
                now = time.monotonic()
                self.seen_at |= dict.fromkeys(snap.registrations, now)
                remembered = None
                if now < self.scheduler.frozen_until:  # an inherited ring
                    remembered = {n: node_address(r) for n, r in self.seen.items()}
                lately = frozenset(node_address(self.seen[n]) for n, at in self.seen_at.items()
                                   if now - at < TRUST_LINGER_S)  # fmt: skip
                desired = desired_state(snap, weights, remembered, lately)
                if weights is None and (kept := self._grace_tables()) is not None:
                    desired = replace(desired, scheduler=kept)
                await self.datapath.apply(desired)
                self.synced_at = time.monotonic()
                if leading:
                    self._relist(snap)
                if self.handoff is not None:
                    await self.handoff.update(snap, leading)
            except StoreError as e:
                log.warning("datapath_sync_failed", reason=str(e))
                await self._fence_without_etcd()
            except (DatapathError, ValidationError, OSError) as e:
                log.warning("datapath_sync_failed", reason=str(e))

    def _relist(self, snap: Snapshot) -> None:
        """List, in the background, the connections of registered nodes this leader has not
        listed: one that was unreachable at the take-over, or that left etcd and came back
        (cut off longer than its lease). Its connections move to it from the ring's choice."""
        self.listed &= snap.registrations.keys()  # one that leaves is listed again on return,
        for node in self.list_failures.keys() - snap.registrations.keys():  # at once
            del self.list_failures[node]
            self.list_tried.pop(node, None)
        if not snap.services:
            return
        now = time.monotonic()
        # Not itself: its own frozen L7 sockets would be pinned back to it mid-handoff.
        skip = self.listed | self.gone() | {self.node_id}
        due = {n for n in snap.registrations if n not in skip and now >= self.list_tried.get(n, 0)}
        if due and (self.relisting is None or self.relisting.done()):
            self.relisting = asyncio.create_task(self._recover_flows(snap, due))

    def _warm(self, rings: Rings) -> None:
        """Build the stored rings in the background while following: a take-over starts from
        them (Scheduler.take_over), and building one costs tens of milliseconds."""
        self.warmed = rings
        if self.warming is None or self.warming.done():
            self.warming = asyncio.create_task(asyncio.to_thread(_build_rings, rings))

    def _grace_tables(self) -> SchedulerTables | None:
        """After stepping down: the last tables, for packets a stale ARP entry still sends
        here; fenced (known flows only) once another node leads, unfenced until then (a
        planned handover's gap places rather than drops), L7 VIPs fenced at once (this node's
        listeners are gone: a dropped SYN is retried, a reset one is lost)."""
        kept = self.datapath.programmed().scheduler
        if kept is None or not self._in_grace():
            return None
        return replace(kept, fenced=self.other_leads, listening=False)

    async def _fence_without_etcd(self) -> None:
        """A deposed leader that cannot reach etcd still fences what it programmed."""
        kept, current = self._grace_tables(), self.datapath.programmed()
        if kept is not None and kept != current.scheduler:
            with contextlib.suppress(DatapathError, OSError):
                await self.datapath.apply(replace(current, scheduler=kept))

    def deposed(self) -> None:
        """Another node announced a VIP (datapath/vip.py heard it): fence at once."""
        if not self.leading and not self.other_leads:
            self.other_leads = True
            self.wake.set()

    def handoff_left_s(self) -> float:
        if self.stepped_down_at is None:
            return 0.0
        return HANDOFF_S - (time.monotonic() - self.stepped_down_at)

    def _in_grace(self) -> bool:
        return (
            self.stepped_down_at is not None
            and time.monotonic() - self.stepped_down_at < STEP_DOWN_GRACE_S
        )

    # VipHolder: the election calls these.
    async def hold(self, vips: frozenset[str]) -> None:
        if not self.leading:
            self.leading, self.stepped_down_at, self.other_leads = True, None, False
            started = time.monotonic()
            try:  # one read serves the take-over: rings, tables and flow recovery
                snap: Snapshot | None = await self.state.snapshot()
            except StoreError as e:
                log.warning("takeover_read_failed", reason=str(e))
                snap = None
            if snap is not None:
                self.scheduler.take_over(snap.rings)
                # The nodes' connection lists are fetched while the tables are programmed
                # (sync holds the lock first; the flows are pinned after it).
                if self.handoff is not None:
                    self.handoff.eject(self.gone())  # the node we replaced: nothing to hand it
                self.listed, self.list_failures = set(), {}
                self.list_tried = dict.fromkeys(self.seen | snap.registrations, started + RELIST_S)
                _, recovered = await asyncio.gather(self.sync(snap), self._recover_flows(snap))
            else:
                await self.sync()
                recovered = 0
            log.info(
                "scheduler_prepared",
                flows_recovered=recovered,
                took_ms=round((time.monotonic() - started) * 1000, 1),
            )
        await self.vips.hold(vips)

    async def release(self) -> None:
        await self.vips.release()
        if self.leading:
            self.leading, self.stepped_down_at = False, time.monotonic()
            self.wake.set()

    async def _recover_flows(self, snap: Snapshot, only: set[str] | None = None) -> int:
        """Pin every connection the nodes (`only` these) serve on a VIP to the node serving
        it, over any earlier choice."""
        vips = sorted({s.vip for s in snap.services.values()})
        # Every node this one has seen, registered now or not: a node whose lease lapsed a
        # moment ago (an etcd outage ends with every lease expired) still serves connections.
        gone = self.gone()
        nodes = {
            n: r
            for n, r in (self.seen | snap.registrations).items()
            if n not in gone and (only is None or n in only)
        }
        if not vips or not nodes:
            return 0
        answers = await asyncio.gather(
            *(
                _connections_here(vips, n) if n == self.node_id
                else _connections(r.endpoint, vips, self.tls)
                for n, r in nodes.items()
            )
        )  # fmt: skip
        for node, answer in zip(nodes, answers, strict=True):
            failures = 0 if answer is not None else self.list_failures.get(node, 0) + 1
            self.list_failures[node] = failures
            wait = min(RELIST_S * 2 ** min(failures, 8), RELIST_MAX_S)
            self.list_tried[node] = time.monotonic() + wait
            if answer is not None:
                self.listed.add(node)
        flows = [f for answer in answers for f in answer or ()]
        async with self.lock:
            added = await self.datapath.add_flows(flows)
        if only is not None and added:
            log.info("flows_relisted", nodes=sorted(only), flows=added)
        return added


def _build_rings(rings: Rings) -> None:
    for weights in rings.values():
        if weights:
            maglev.build_cached(weights, layout.RING_SIZE)


async def _connections(endpoint: str, vips: list[str], tls: TlsFiles | None) -> list[Flow] | None:
    """The connections a node serves on these VIPs; None when it did not answer."""
    try:
        async with channel(endpoint, tls) as node:
            reply = await cluster_pb2_grpc.DatapathStub(node).ListConnections(
                pb.ListConnectionsRequest(vips=vips), timeout=RECOVERY_TIMEOUT_S
            )
    except grpc.aio.AioRpcError as e:
        log.warning("flow_recovery_skipped", endpoint=endpoint, reason=e.code().name)
        return None
    return [Flow(c.client, c.client_port, c.vip, c.port, reply.node_id) for c in reply.connections]


async def _connections_here(vips: list[str], node_id: str) -> list[Flow] | None:
    """This node's own connections on these VIPs, read here: through its own API they cost a
    TLS connection to itself on its own event loop (a take-over just after a pause waited
    RECOVERY_TIMEOUT_S for it, in vain, before announcing the VIPs)."""
    try:
        return await asyncio.to_thread(served_flows, set(vips), node_id)
    except Exception as e:  # noqa: BLE001 - as an unanswered node: take over without them
        log.warning("flow_recovery_skipped", endpoint="here", reason=str(e))
        return None
