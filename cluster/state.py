"""ClusterState: the admin operations on the shared state in etcd.

Every node's API calls this; it holds nothing in memory. Writes are compare-and-swap on the
key's mod revision, so two operators racing on the same node or service never lose an update
silently: the loser re-reads and re-applies its change.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from cluster.errors import NotFound, ValidationError
from cluster.keys import Keys, Kind
from cluster.model import (
    ApplyResult,
    ClusterEvent,
    ClusterStatus,
    Designation,
    EventType,
    Node,
    Role,
    ServiceSpec,
    Serving,
    designation_from_doc,
    designation_to_doc,
    endpoint_problems,
    normalize_service,
    registration_from_doc,
    service_from_doc,
    service_to_doc,
    validate_node_id,
    validate_service,
    validate_weight,
)
from cluster.store.base import Compare, Delete, KeyValue, Put, Revision, Store, WatchEvent

CAS_ATTEMPTS = 5


def encode(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode(value: bytes) -> dict[str, object]:
    doc = json.loads(value)
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {value[:60]!r}")
    return doc


class ClusterState:
    def __init__(self, store: Store, keys: Keys, answered_by: str = "") -> None:
        self.store, self.keys, self.answered_by = store, keys, answered_by

    # --- nodes ---------------------------------------------------------------------------

    async def list_nodes(self) -> tuple[list[Node], Revision]:
        """Every node that ever registered (or was force-designated), sorted by id."""
        kvs, revision = await self.store.get_prefix(self.keys.prefix())
        return self._nodes(kvs), revision

    def _nodes(self, kvs: list[KeyValue]) -> list[Node]:
        designations: dict[str, Designation] = {}
        registrations = {}
        for kv in kvs:
            parsed = self.keys.parse(kv.key)
            if parsed is None:
                continue
            kind, name = parsed
            if kind == Kind.DESIGNATION:
                designations[name] = designation_from_doc(name, decode(kv.value))
            elif kind == Kind.NODE:
                registrations[name] = registration_from_doc(decode(kv.value))
        return [
            Node(n, designations.get(n, Designation(n)), registrations.get(n))
            for n in sorted(designations.keys() | registrations.keys())
        ]

    async def get_node(self, node_id: str) -> Node:
        validate_node_id(node_id)
        for node in (await self.list_nodes())[0]:
            if node.node_id == node_id:
                return node
        raise NotFound(
            f"node {node_id!r} is unknown: it never registered (see `clusterctl nodes list`)"
        )

    async def designate(
        self, node_id: str, role: Role, force: bool = False
    ) -> tuple[Designation, list[str]]:
        """Set a node's scheduler role. Unknown nodes need force (and get a warning)."""
        validate_node_id(node_id)
        _check_enum(role, Role, "role")
        warnings: list[str] = []
        if force:
            known = await self.store.get(self.keys.designation(node_id))
            if known is None:
                warnings.append(
                    f"node {node_id!r} has never registered; the designation is "
                    "stored and takes effect when it joins"
                )
        return await self._update(node_id, lambda d: replace(d, role=Role(role)), force), warnings

    async def set_serving(
        self, node_id: str, serving: Serving, weight: int | None = None
    ) -> Designation:
        validate_node_id(node_id)
        _check_enum(serving, Serving, "serving")
        if weight is not None:
            validate_weight(weight)

        def change(d: Designation) -> Designation:
            return replace(
                d, serving=Serving(serving), weight=d.weight if weight is None else weight
            )

        return await self._update(node_id, change, create=False)

    async def _update(
        self, node_id: str, change: Callable[[Designation], Designation], create: bool
    ) -> Designation:
        key = self.keys.designation(node_id)
        for _ in range(CAS_ATTEMPTS):
            kv = await self.store.get(key)
            if kv is None and not create:
                raise NotFound(
                    f"node {node_id!r} is unknown: it never registered; designate "
                    "it with --force first, or start its tcphopd"
                )
            current = (
                designation_from_doc(node_id, decode(kv.value)) if kv else Designation(node_id)
            )
            new = change(current)
            guard = (
                Compare(key, "mod", "==", kv.mod_revision)
                if kv
                else Compare(key, "create", "==", 0)
            )
            if (
                await self.store.txn([guard], [Put(key, encode(designation_to_doc(new)))])
            ).succeeded:
                return new
        raise RuntimeError(f"designation of {node_id!r} kept changing under us; try again")

    # --- services ------------------------------------------------------------------------

    async def list_services(self) -> list[ServiceSpec]:
        kvs, _ = await self.store.get_prefix(self.keys.prefix(Kind.SERVICE))
        return [service_from_doc(decode(kv.value)) for kv in kvs]

    async def get_service(self, name: str) -> ServiceSpec:
        kv = await self.store.get(self.keys.service(name))
        if kv is None:
            raise NotFound(f"service {name!r} does not exist (see `clusterctl service list`)")
        return service_from_doc(decode(kv.value))

    async def apply_service(self, spec: ServiceSpec) -> ApplyResult:
        """Create or replace a service; validate it and its VIP:port against the others."""
        validate_service(spec)
        spec = normalize_service(spec)
        key = self.keys.service(spec.name)
        value = encode(service_to_doc(spec))
        for _ in range(CAS_ATTEMPTS):
            kvs, _ = await self.store.get_prefix(self.keys.prefix())
            services = {
                kv.key: kv for kv in kvs if kv.key.startswith(self.keys.prefix(Kind.SERVICE))
            }
            taken = endpoint_problems(
                spec, [service_from_doc(decode(kv.value)) for k, kv in services.items() if k != key]
            )
            if taken:
                raise ValidationError(taken)
            existing = services.get(key)
            if existing is not None and existing.value == value:
                return ApplyResult(
                    spec, "unchanged", existing.mod_revision, tuple(self._pool_warnings(spec, kvs))
                )
            guard = (
                Compare(key, "mod", "==", existing.mod_revision)
                if existing
                else Compare(key, "create", "==", 0)
            )
            result = await self.store.txn([guard], [Put(key, value)])
            if result.succeeded:
                return ApplyResult(
                    spec,
                    "updated" if existing else "created",
                    result.revision,
                    tuple(self._pool_warnings(spec, kvs)),
                )
        raise RuntimeError(f"service {spec.name!r} kept changing under us; try again")

    def _pool_warnings(self, spec: ServiceSpec, kvs: list[KeyValue]) -> list[str]:
        known = {n.node_id for n in self._nodes(kvs)}
        named = set(spec.pool.nodes).union(*(r.pool.nodes for r in spec.rules))
        return [f"pool names node {n!r}, which has never registered" for n in sorted(named - known)]

    async def delete_service(self, name: str) -> Revision:
        key = self.keys.service(name)
        result = await self.store.txn([Compare(key, "create", ">", 0)], [Delete(key)])
        if not result.succeeded:
            raise NotFound(f"service {name!r} does not exist (see `clusterctl service list`)")
        return result.revision

    # --- status and events ---------------------------------------------------------------

    async def status(self) -> ClusterStatus:
        kvs, revision = await self.store.get_prefix(self.keys.prefix())
        services = sum(1 for kv in kvs if kv.key.startswith(self.keys.prefix(Kind.SERVICE)))
        return ClusterStatus(
            self.answered_by, tuple(self._nodes(kvs)), services, revision, self.store.endpoints
        )

    async def events(self, from_revision: int = 0) -> AsyncIterator[ClusterEvent]:
        """Cluster events in revision order, from from_revision (inclusive) or from now (0)."""
        async for ev in self.store.watch_prefix(self.keys.prefix(), from_revision):
            event = self._event(ev)
            if event is not None:
                yield event

    def _event(self, ev: WatchEvent) -> ClusterEvent | None:
        parsed = self.keys.parse(ev.kv.key)
        if parsed is None:
            return None
        kind, name = parsed
        rev, deleted = ev.kv.mod_revision, ev.kind == "delete"
        if kind == Kind.NODE:
            if deleted:
                return ClusterEvent(rev, EventType.NODE_LEFT, name)
            if ev.kv.version == 1:
                return ClusterEvent(
                    rev,
                    EventType.NODE_JOINED,
                    name,
                    registration=registration_from_doc(decode(ev.kv.value)),
                )
            return None
        if kind == Kind.DESIGNATION:
            if deleted:
                return None
            return ClusterEvent(
                rev,
                EventType.DESIGNATION_CHANGED,
                name,
                designation=designation_from_doc(name, decode(ev.kv.value)),
            )
        if deleted:
            return ClusterEvent(rev, EventType.SERVICE_DELETED, name)
        return ClusterEvent(
            rev, EventType.SERVICE_APPLIED, name, service=service_from_doc(decode(ev.kv.value))
        )


def _check_enum(value: object, enum: type[Role] | type[Serving], field: str) -> None:
    if value not in enum.__members__.values():
        allowed = ", ".join(str(m) for m in enum)
        raise ValidationError([f"{field}: {value!r} is not one of {allowed}"])
