"""The agent's link to the cluster (agent.reporter.ClusterLink) on etcd: which services this
node checks and who leads, from one snapshot; the health summary under the node's lease."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from cluster.documents import report_to_doc
from cluster.errors import StoreError
from cluster.model import LoadReport, ServiceSpec
from cluster.snapshot import encode
from cluster.state import ClusterState
from cluster.store.base import LeaseId

log = structlog.get_logger()


class EtcdLink:
    def __init__(
        self, state: ClusterState, node_id: str, node_lease: Callable[[], LeaseId | None]
    ) -> None:
        self.state, self.node_id, self.node_lease = state, node_id, node_lease

    async def lookup(self) -> tuple[list[ServiceSpec], str] | None:
        try:
            snap = await self.state.snapshot()
        except StoreError as e:
            log.warning("cluster_lookup_failed", reason=str(e))
            return None
        services = [
            s
            for _, s in sorted(snap.services.items())
            if s.pool.all or self.node_id in s.pool.nodes
        ]
        return services, snap.leader.endpoint if snap.leader else ""

    async def publish(self, report: LoadReport) -> None:
        lease = self.node_lease()
        if lease is None:
            return
        key = self.state.keys.health(self.node_id)
        try:
            await self.state.store.put(key, encode(report_to_doc(report)), lease)
        except StoreError as e:
            log.warning("health_summary_failed", reason=str(e))
