"""The L7 handoff, scheduler side: delayed binding on the leader.

For every `l7` service the leader listens on VIP:port (the XDP program passes new connections
of L7 services to the local stack). Per connection: read the request head with bounds (size,
header count, time, concurrency: cluster/limits.py; 400/408/431 and close on violation), match
the service's rules (RE2: linear time), place (the rule's pool and policy; persistence by
cookie or source address), then hand off:

    freeze + snapshot -> adopt on the chosen node (cluster/l7/channel.py) -> flow into the XDP
    flow map -> commit -> close the frozen socket (in repair mode: silent)

If a node refuses or does not answer within HANDOFF_TIMEOUT_S the next candidate gets the same
snapshot; when none is left the socket is thawed and answered 503. At a take-over, the node the
election found dead or silent is ejected for EJECT_S: new connections go elsewhere unless no
other candidate is left. A connection placed on the leader itself is not handed off: it is
handed to the local application directly (splice services; descriptor services never place on
the scheduler, which has no way to put the read request back into a live socket). Keep-alive
requests stay on the node the connection was handed off to. On stepping down, a listener's
backlog is accepted before it closes, and connections accepted while leading are served here
(when this node is one of their servers) rather than answered 503.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import time
from collections import Counter

import structlog

from cluster.histogram import Histogram
from cluster.l7.adopt import Adopter
from cluster.l7.channel import HandoffChannel
from cluster.l7.listeners import Listeners
from cluster.l7.request import BadRequest, RequestHead, answer, parse_head, select_rule
from cluster.limits import (
    HEAD_TIMEOUT_S,
    LINGER_BYTES,
    LINGER_S,
    MAX_PENDING_HEADS,
)
from cluster.model import Delivery, ServiceSpec
from cluster.scheduler import Scheduler
from cluster.snapshot import Snapshot
from cluster.tls import TlsFiles
from datapath import tcprepair
from datapath.protocol import Datapath, Flow
from datapath.tcprepair import RepairError, TcpState

log = structlog.get_logger()
HANDOFF_TIMEOUT_S = 0.5
MAX_ATTEMPTS = 3
# A node the election found dead or silent gets no new connection for this long after a
# take-over, unless every candidate is out. (Not one that merely did not answer a handoff in
# time: on a loaded machine that happens now and then, and ejecting it for seconds broke rule
# pools and cookie persistence for every request meanwhile; that connection alone moves on.)
EJECT_S = 3.0


class L7Handoff:
    def __init__(
        self,
        node_id: str,
        scheduler: Scheduler,
        datapath: Datapath,
        descriptor_dir: str = "/run/tcphop",
        tls: TlsFiles | None = None,
    ) -> None:
        self.node_id, self.scheduler, self.datapath = node_id, scheduler, datapath
        self.tls = tls  # this node's certificate, for the handoff channels it opens
        # The receiving side of handoffs to this node: it delivers by the same service specs.
        self.adopter = Adopter(node_id, self.services, descriptor_dir)
        self.snap: Snapshot | None = None
        self.stats: Counter[str] = Counter()
        self.listening = Listeners(self._start, self.stats)  # on VIP:ports, while leading
        self.rule_hits: Counter[str] = Counter()
        self.latency = Histogram()  # head read to handoff done (cluster/metrics.py reads it)
        self.head_latency = Histogram()  # accept to a complete request head
        self.channels: dict[str, HandoffChannel] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        # Connections whose request head is still being read, oldest first. At
        # MAX_PENDING_HEADS the oldest is dropped for the newest: a slow-head flood costs bounded
        # memory, and a client that sends its head at once still gets through.
        self.reading: collections.OrderedDict[asyncio.Task[None], socket.socket] = (
            collections.OrderedDict()
        )
        self.match_ms_max = 0.0  # the longest rule match so far (RE2: bounded by the input)
        self.ejected: dict[str, float] = {}  # node -> monotonic time it may be placed on again

    def eject(self, nodes: frozenset[str] | set[str]) -> None:
        """Place nothing on these nodes for EJECT_S (the election found them dead or silent)."""
        until = time.monotonic() + EJECT_S
        for node in nodes:
            if node != self.node_id:
                self.ejected[node] = until
                self.stats["nodes_ejected"] += 1
                log.warning("l7_node_ejected", node=node, for_s=EJECT_S)

    def _eligible(self, candidates: list[str]) -> list[str]:
        now = time.monotonic()
        self.ejected = {n: until for n, until in self.ejected.items() if until > now}
        kept = [n for n in candidates if n not in self.ejected]
        return kept or candidates  # every candidate out: try them anyway

    def services(self) -> dict[str, ServiceSpec]:
        return dict(self.snap.services) if self.snap else {}

    async def update(self, snap: Snapshot, leading: bool) -> None:
        """Listen on exactly the L7 services' VIP:ports while leading."""
        self.snap = snap
        await self.listening.update(set(snap.l7_endpoints) if leading else set())

    async def close(self) -> None:
        self.listening.close()
        for channel in self.channels.values():
            await channel.close()

    def _start(self, conn: socket.socket, client: tuple[str, int]) -> None:
        if len(self.reading) >= MAX_PENDING_HEADS:
            oldest, oldest_conn = self.reading.popitem(last=False)
            oldest.cancel()
            oldest_conn.close()
            self.stats["heads_evicted"] += 1
        task = asyncio.get_running_loop().create_task(self._handle(conn, client))
        self.reading[task] = conn
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, conn: socket.socket, client: tuple[str, int]) -> None:
        accepted = time.monotonic()
        try:
            head_and_buf = await self._read_head(conn)
            if head_and_buf is not None:
                self.head_latency.observe(time.monotonic() - accepted)
        except asyncio.CancelledError:
            conn.close()  # evicted by a newer connection (or the listener stopped)
            raise
        finally:
            if (me := asyncio.current_task()) is not None:
                self.reading.pop(me, None)
        if head_and_buf is not None:
            await self._hand_off(conn, client, head_and_buf[1], head_and_buf[0])

    async def _read_head(self, conn: socket.socket) -> tuple[RequestHead, bytes] | None:
        loop = asyncio.get_running_loop()
        conn.setblocking(False)
        buf = b""
        deadline = loop.time() + HEAD_TIMEOUT_S
        try:
            head: RequestHead | None = None
            while head is None:
                async with asyncio.timeout_at(deadline):
                    chunk = await loop.sock_recv(conn, 65536)
                if not chunk:
                    conn.close()
                    return None
                buf += chunk
                head = parse_head(buf)
        except TimeoutError:
            await self._refuse(conn, 408)
            return None
        except BadRequest as e:
            await self._refuse(conn, e.status)
            return None
        except OSError:
            conn.close()
            return None
        return head, buf

    async def _refuse(self, conn: socket.socket, status: int) -> None:
        """Answer and close. A lingering close (RFC 9112 section 9.6): closing with unread
        request bytes sends a reset that can destroy the answer before the client reads it, so
        read and drop what the client still sends, within LINGER_BYTES and LINGER_S."""
        self.stats[f"answered_{status}"] += 1
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError, TimeoutError):
            await loop.sock_sendall(conn, answer(status))
            conn.shutdown(socket.SHUT_WR)
            async with asyncio.timeout(LINGER_S):
                drained = 0
                while drained < LINGER_BYTES and (chunk := await loop.sock_recv(conn, 65536)):
                    drained += len(chunk)
        conn.close()

    async def _hand_off(
        self, conn: socket.socket, client: tuple[str, int], buf: bytes, head: RequestHead
    ) -> None:
        started = time.monotonic()
        vip = conn.getsockname()
        snap = self.snap
        spec = next(
            (s for s in (snap.services.values() if snap else ()) if (s.vip, s.port) == vip),
            None,
        )
        if snap is None or spec is None:
            await self._refuse(conn, 503)
            return
        leading = bool(self.scheduler.term())
        candidates = self._candidates(snap, spec, head, client)
        if not leading:
            # Stepped down since the accept (a handover): hand nothing off (nodes take handoffs
            # from the leader only, and the successor, which lists this node's connections as
            # it takes over, would not learn of the flow); serve it here if this node is one
            # of the service's servers, else 503.
            candidates = [n for n in candidates if n == self.node_id]
            if not candidates:
                await self._refuse(conn, 503)
                return
            self.stats["served_after_step_down"] += 1
        if candidates and candidates[0] == self.node_id:
            self.stats["served_locally"] += 1
            self.adopter.deliver(spec.name, conn, buf)
            return
        try:
            tcprepair.freeze(conn)
            state = tcprepair.snapshot(conn, buf)
        except (OSError, RepairError) as e:
            log.warning("handoff_snapshot_failed", reason=str(e))
            await self._give_up(conn)
            return
        for attempt, node in enumerate(c for c in candidates[:MAX_ATTEMPTS] if c != self.node_id):
            if attempt:
                self.stats["handoffs_retried"] += 1
            if await self._hand_off_to(node, snap, spec, state):
                conn.close()  # in repair mode: nothing is sent
                self.stats["handoffs_done"] += 1
                self.latency.observe(time.monotonic() - started)
                return
        self.stats["handoffs_failed"] += 1
        await self._give_up(conn)

    def _candidates(
        self, snap: Snapshot, spec: ServiceSpec, head: RequestHead, client: tuple[str, int]
    ) -> list[str]:
        """Where the connection may go, best first: the matching rule's pool and policy,
        persistence by source address or cookie, ejected nodes last resort."""
        matching = time.perf_counter()
        rule = select_rule(spec, head)
        self.match_ms_max = max(self.match_ms_max, 1000 * (time.perf_counter() - matching))
        self.rule_hits[f"{spec.name}/{rule.name if rule else '-'}"] += 1
        persist = None
        if spec.persistence == "source-ip":
            persist = client[0].encode()
        elif spec.persistence.startswith("cookie:"):
            value = head.cookies.get(spec.persistence.removeprefix("cookie:"))
            persist = value.encode() if value else None
        candidates = self._eligible(self.scheduler.l7_candidates(snap, spec, rule, persist))
        if spec.delivery == Delivery.DESCRIPTOR:  # a live socket cannot get its bytes back
            return [n for n in candidates if n != self.node_id]
        return candidates

    async def _give_up(self, conn: socket.socket) -> None:
        try:
            tcprepair.thaw(conn)
        except OSError:
            conn.close()
            return
        await self._refuse(conn, 503)

    async def _hand_off_to(
        self, node: str, snap: Snapshot, spec: ServiceSpec, state: TcpState
    ) -> bool:
        registration = snap.registrations.get(node)
        if registration is None:
            return False
        stream = self._channel(registration.endpoint)
        try:
            handoff_id, error = await stream.adopt(spec.name, state, HANDOFF_TIMEOUT_S)
        except (TimeoutError, OSError) as e:
            log.warning("handoff_unanswered", node=node, reason=str(e) or type(e).__name__)
            stream.reset()
            return False
        if error:
            log.warning("handoff_refused", node=node, reason=error)
            return False
        flow = Flow(state.peer[0], state.peer[1], state.local[0], state.local[1], node)
        go = await self.datapath.add_flows([flow]) == 1
        try:
            async with asyncio.timeout(HANDOFF_TIMEOUT_S):
                await stream.commit(handoff_id, go)
        except (TimeoutError, OSError) as e:
            log.warning("handoff_commit_failed", node=node, reason=str(e) or type(e).__name__)
            if go:  # the flow already points there; its restored socket expires unused
                self.datapath.remove_flow(*state.peer, *state.local)
            stream.reset()
            return False
        return go

    def _channel(self, endpoint: str) -> HandoffChannel:
        if endpoint not in self.channels:
            self.channels[endpoint] = HandoffChannel(endpoint, self.tls)
        return self.channels[endpoint]

    def latency_ms(self, q: float) -> float:
        return self.latency.quantile_ms(q)
