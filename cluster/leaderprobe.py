"""The dead-leader probe: revoke a dead leader's lease rather than wait up to TTL + 0.5 s for
etcd to expire it.

Evidence of death: the leader's API port, which this node reached before in this term, refuses
connections twice 50 ms apart. The API serves for a leader's whole term, so a live leader never
refuses; a paused or cut-off one times out instead, and then only its lease expiry frees the
key. (So a firewall must DROP, not REJECT, the API port.)
"""

from __future__ import annotations

import asyncio

import structlog

from cluster.snapshot import Snapshot
from cluster.store.base import LeaseId, Store

log = structlog.get_logger()


class LeaderProbe:
    def __init__(self, store: Store, me: str, timeout_s: float) -> None:
        self.store, self.me, self.timeout_s = store, me, timeout_s
        self.seen_alive_term = 0  # the last leader term whose API this node reached
        # node id -> start time of its registration that outlived its dead process
        self.dead: dict[str, float] = {}

    def dead_nodes(self, view: Snapshot) -> frozenset[str]:
        """Nodes known dead whose registration has not expired yet (a restarted node, with a
        new registration, is alive again)."""
        self.dead = {
            n: started
            for n, started in self.dead.items()
            if (r := view.registrations.get(n)) and r.started_at_unix_s == started
        }
        return frozenset(self.dead)

    async def probe(self, view: Snapshot) -> bool:
        """Probe the current leader; True when it was found dead and its lease revoked."""
        leader = view.leader
        if leader is None or leader.node_id == self.me or not view.leader_lease:
            return False
        host, _, port = leader.endpoint.rpartition(":")
        for attempt in range(2):
            if attempt:
                await asyncio.sleep(0.05)
            try:
                async with asyncio.timeout(self.timeout_s):
                    _, writer = await asyncio.open_connection(host, int(port))
                writer.close()
                self.seen_alive_term = leader.term
                return False
            except ConnectionRefusedError:
                continue
            except (OSError, TimeoutError, ValueError):
                return False  # no proof either way
        if self.seen_alive_term != leader.term:
            return False
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
        return True
