"""Is this node healthy, does it lead, is it ready: one answer for the HTTP endpoints
(cluster/httpapi.py: /healthz, /leader, /ready, Patroni-style) and for gRPC health.

- healthy: registered (its node lease confirmed by etcd within the lease TTL) and etcd readable
  (the election's last successful read is younger than STALE_FRACTION of the lease TTL);
- leader: this node's leader lease is surely valid (the same test that lets it hold VIPs);
- ready: healthy, and its datapath matched etcd at least once since it started (it can serve
  the VIPs hopped to it); a leader also has its scheduler tables programmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from cluster.election import RoleManager
from cluster.forwarding import Forwarder
from cluster.membership import Membership

STALE_FRACTION = 0.75  # etcd counts as unreachable after this share of the lease TTL unread
FOLLOW_S = 0.25  # how often gRPC health follows the state


class NodeHealth:
    def __init__(
        self, membership: Membership, roles: RoleManager, forwarder: Forwarder | None
    ) -> None:
        self.membership, self.roles, self.forwarder = membership, roles, forwarder

    def problem(self) -> str:
        """Why this node is not healthy; "" when it is."""
        now, ttl_s = time.monotonic(), self.membership.ttl_s
        if self.membership.current_lease() is None:
            return "not registered: the node lease was lost (re-registering)"
        if (age := now - self.membership.refreshed_at) > ttl_s:
            return f"the node lease was not refreshed for {age:.1f} s (TTL {ttl_s} s)"
        if (age := now - self.roles.read_at) > STALE_FRACTION * ttl_s:
            return f"etcd unreachable: no successful read for {age:.1f} s"
        return ""

    def leading(self) -> bool:
        return self.roles.leader.valid()

    def not_ready(self) -> str:
        """Why this node is not ready to serve; "" when it is."""
        if problem := self.problem():
            return problem
        if self.forwarder is None:
            return ""
        if not self.forwarder.synced_at:
            return "the datapath has not been programmed from etcd yet"
        if self.leading() and self.forwarder.datapath.programmed().scheduler is None:
            return "leading, but the scheduler tables are not programmed yet"
        return ""

    def document(self) -> dict[str, Any]:
        """The JSON body every endpoint answers with."""
        problem, not_ready = self.problem(), self.not_ready()
        return {
            "node_id": self.membership.node_id,
            "healthy": not problem,
            "leader": self.leading(),
            "term": self.roles.leader.term,
            "ready": not not_ready,
            "reason": problem or not_ready,
        }

    async def follow(
        self, servicer: HealthServicer, services: list[str], stop: asyncio.Event
    ) -> None:
        """Keep gRPC health in step until `stop`: NOT_SERVING while the node is not healthy."""
        serving: bool | None = None
        while not stop.is_set():
            now = not self.problem()
            if now != serving:
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if now
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                for name in services:
                    await servicer.set(name, status)
                serving = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FOLLOW_S)
