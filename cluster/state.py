"""ClusterState: reading and changing the shared state in etcd.

`Snapshot` is one consistent read of the whole key space (one range request at one revision);
the API and the election both decide from it. Writes are compare-and-swap on mod revisions, so
two operators racing on the same node or service never lose an update silently: the loser
re-reads and re-applies its change.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from cluster.documents import (
    designation_from_doc,
    designation_to_doc,
    normalize_service,
    record_from_doc,
    report_from_doc,
    service_from_doc,
    service_to_doc,
)
from cluster.errors import NotFound, ValidationError
from cluster.keys import Keys, Kind
from cluster.model import (
    ApplyResult,
    ClusterEvent,
    ClusterStatus,
    Designation,
    EventType,
    Handover,
    LeaderRecord,
    LoadReport,
    Node,
    Registration,
    Role,
    ServiceSpec,
    Serving,
    VipOwner,
)
from cluster.store.base import Compare, Delete, KeyValue, Put, Revision, Store, WatchEvent
from cluster.validation import (
    endpoint_problems,
    validate_node_id,
    validate_service,
    validate_weight,
)

CAS_ATTEMPTS = 5


def encode(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode(value: bytes) -> dict[str, object]:
    doc = json.loads(value)
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {value[:60]!r}")
    return doc


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything under the key root at one revision."""

    revision: int
    registrations: dict[str, Registration]
    designations: dict[str, Designation]
    designation_revisions: dict[str, int]
    ready: frozenset[str]  # alive candidates
    services: dict[str, ServiceSpec]
    service_revisions: dict[str, int]
    leader: LeaderRecord | None
    leader_revision: int  # the leader key's create revision (the fencing token); 0: none
    leader_lease: int
    term: int
    term_mod_revision: int
    owners: dict[str, VipOwner]
    handover: Handover | None
    malformed: tuple[str, ...] = ()  # keys whose values could not be read; they are ignored
    health: dict[str, LoadReport] = field(default_factory=dict)

    @property
    def alive(self) -> frozenset[str]:
        return frozenset(self.registrations)

    @property
    def vips(self) -> frozenset[str]:
        return frozenset(s.vip for s in self.services.values())

    def role(self, node_id: str) -> Role:
        return self.designations.get(node_id, Designation(node_id)).role

    def nodes(self) -> list[Node]:
        """Every node that ever registered (or was force-designated), sorted by id."""
        ids = sorted(self.designations.keys() | self.registrations.keys())
        return [
            Node(
                n,
                self.designations.get(n, Designation(n)),
                self.registrations.get(n),
                self.health.get(n),
            )
            for n in ids
        ]


@functools.lru_cache(maxsize=1024)
def _service(value: bytes) -> ServiceSpec:
    """Parsing and validating a spec is the costly part of a snapshot, and every node takes a
    snapshot every TTL/5: parse each stored value once (specs are immutable)."""
    return service_from_doc(decode(value))


_READERS: dict[Kind, Callable[[str, bytes], object]] = {
    Kind.NODE: lambda _, v: record_from_doc(Registration, decode(v)),
    Kind.DESIGNATION: lambda name, v: designation_from_doc(name, decode(v)),
    Kind.SERVICE: lambda _, v: _service(v),
    Kind.CANDIDATE: lambda _, v: True,
    Kind.VIP: lambda _, v: record_from_doc(VipOwner, decode(v)),
    Kind.HEALTH: lambda _, v: report_from_doc(decode(v)),
}
_BAD_VALUE = (ValueError, TypeError, KeyError, ValidationError)


def read_snapshot(kvs: list[KeyValue], revision: int, keys: Keys) -> Snapshot:
    """Parse one range read of the key root. Unreadable values are skipped and listed."""
    values: dict[Kind, dict[str, Any]] = {kind: {} for kind in _READERS}
    revs: dict[Kind, dict[str, int]] = {kind: {} for kind in _READERS}
    singles: dict[bytes, KeyValue] = {}
    malformed: list[str] = []
    for kv in kvs:
        parsed = keys.parse(kv.key)
        if parsed is None:
            singles[kv.key] = kv
            continue
        kind, name = parsed
        try:
            values[kind][name] = _READERS[kind](name, kv.value)
            revs[kind][name] = kv.mod_revision
        except _BAD_VALUE:
            malformed.append(kv.key.decode(errors="replace"))  # written by hand or a bug
    leader, leader_kv = _single(singles.get(keys.leader), LeaderRecord, malformed)
    handover, _ = _single(singles.get(keys.handover), Handover, malformed)
    term_kv = singles.get(keys.term)
    registrations = values[Kind.NODE]
    return Snapshot(
        revision,
        registrations,
        values[Kind.DESIGNATION],
        revs[Kind.DESIGNATION],
        frozenset(values[Kind.CANDIDATE].keys() & registrations.keys()),
        values[Kind.SERVICE],
        revs[Kind.SERVICE],
        leader,
        leader_kv.create_revision if leader_kv else 0,
        leader_kv.lease if leader_kv else 0,
        int(term_kv.value) if term_kv else 0,
        term_kv.mod_revision if term_kv else 0,
        values[Kind.VIP],
        handover,
        tuple(malformed),
        values[Kind.HEALTH],
    )


_S = TypeVar("_S", LeaderRecord, Handover)


def _single(
    kv: KeyValue | None, cls: type[_S], malformed: list[str]
) -> tuple[_S | None, KeyValue | None]:
    if kv is None:
        return None, None
    try:
        return record_from_doc(cls, decode(kv.value)), kv
    except _BAD_VALUE:
        malformed.append(kv.key.decode(errors="replace"))
        return None, None


class ClusterState:
    def __init__(self, store: Store, keys: Keys, answered_by: str = "") -> None:
        self.store, self.keys, self.answered_by = store, keys, answered_by

    async def snapshot(self) -> Snapshot:
        kvs, revision = await self.store.get_prefix(self.keys.prefix())
        return read_snapshot(kvs, revision, self.keys)

    # --- nodes ---------------------------------------------------------------------------

    async def list_nodes(self) -> tuple[list[Node], Revision]:
        snap = await self.snapshot()
        return snap.nodes(), Revision(snap.revision)

    async def get_node(self, node_id: str) -> Node:
        validate_node_id(node_id)
        for node in (await self.snapshot()).nodes():
            if node.node_id == node_id:
                return node
        raise NotFound(
            f"node {node_id!r} is unknown: it never registered (see `clusterctl nodes list`)"
        )

    async def designate(
        self, node_id: str, role: Role, force: bool = False
    ) -> tuple[Designation, list[str]]:
        """Set a node's scheduler role.

        There is one designated primary: designating a new one makes the old one a backup, in
        the same transaction. A node that never registered needs force (and gets a warning).
        """
        validate_node_id(node_id)
        _check_enum(role, Role, "role")
        role = Role(role)
        for _ in range(CAS_ATTEMPTS):
            snap = await self.snapshot()
            if node_id not in snap.designations and not force:
                raise NotFound(
                    f"node {node_id!r} is unknown: it never registered; check the "
                    "id, or use --force to designate it before it joins"
                )
            new = replace(snap.designations.get(node_id, Designation(node_id)), role=role)
            changes = [new]
            if role == Role.PRIMARY:
                changes += [
                    replace(d, role=Role.BACKUP)
                    for n, d in snap.designations.items()
                    if n != node_id and d.role == Role.PRIMARY
                ]
            if await self._write_designations(snap, changes):
                return new, self._designate_warnings(snap, new, changes[1:])
        raise RuntimeError(f"designations kept changing under us; try again ({node_id!r})")

    def _designate_warnings(
        self, snap: Snapshot, new: Designation, demoted: list[Designation]
    ) -> list[str]:
        warnings = [f"{d.node_id} was designated primary and is now backup" for d in demoted]
        if new.node_id not in snap.designations:
            warnings.append(
                f"node {new.node_id!r} has never registered; the designation is "
                "stored and takes effect when it joins"
            )
        leader = snap.leader
        if leader and leader.node_id == new.node_id and new.role != Role.PRIMARY:
            others = [
                n
                for n in snap.ready
                if n != new.node_id
                and (
                    snap.role(n) == Role.PRIMARY
                    or (new.role == Role.NONE and snap.role(n) == Role.BACKUP)
                )
            ]
            if not others:
                warnings.append(
                    f"{new.node_id} leads and keeps leading: no other candidate is "
                    "alive and ready to take over"
                )
        return warnings

    async def _write_designations(self, snap: Snapshot, changes: list[Designation]) -> bool:
        guards, ops = [], []
        for d in changes:
            key = self.keys.designation(d.node_id)
            guards.append(Compare(key, "mod", "==", snap.designation_revisions.get(d.node_id, 0)))
            ops.append(Put(key, encode(designation_to_doc(d))))
        return (await self.store.txn(guards, ops)).succeeded

    async def set_serving(
        self, node_id: str, serving: Serving, weight: int | None = None
    ) -> Designation:
        validate_node_id(node_id)
        _check_enum(serving, Serving, "serving")
        if weight is not None:
            validate_weight(weight)
        return await self._update(
            node_id,
            lambda d: replace(
                d, serving=Serving(serving), weight=d.weight if weight is None else weight
            ),
        )

    async def _update(
        self, node_id: str, change: Callable[[Designation], Designation]
    ) -> Designation:
        for _ in range(CAS_ATTEMPTS):
            snap = await self.snapshot()
            if node_id not in snap.designations:
                raise NotFound(
                    f"node {node_id!r} is unknown: it never registered; check the "
                    "id, or start its tcphopd"
                )
            new = change(snap.designations[node_id])
            if await self._write_designations(snap, [new]):
                return new
        raise RuntimeError(f"designation of {node_id!r} kept changing under us; try again")

    # --- services ------------------------------------------------------------------------

    async def list_services(self) -> list[ServiceSpec]:
        return [s for _, s in sorted((await self.snapshot()).services.items())]

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
        for _ in range(CAS_ATTEMPTS):
            snap = await self.snapshot()
            taken = endpoint_problems(spec, list(snap.services.values()))
            if taken:
                raise ValidationError(taken)
            warnings = tuple(self._pool_warnings(spec, snap))
            existing = snap.services.get(spec.name)
            if existing == spec:
                return ApplyResult(spec, "unchanged", snap.service_revisions[spec.name], warnings)
            guard = Compare(key, "mod", "==", snap.service_revisions.get(spec.name, 0))
            result = await self.store.txn([guard], [Put(key, encode(service_to_doc(spec)))])
            if result.succeeded:
                return ApplyResult(
                    spec, "updated" if existing else "created", result.revision, warnings
                )
        raise RuntimeError(f"service {spec.name!r} kept changing under us; try again")

    def _pool_warnings(self, spec: ServiceSpec, snap: Snapshot) -> list[str]:
        known = {n.node_id for n in snap.nodes()}
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
        snap = await self.snapshot()
        return ClusterStatus(
            self.answered_by,
            tuple(snap.nodes()),
            len(snap.services),
            snap.revision,
            self.store.endpoints,
            leader=snap.leader,
            vip_owners=tuple(o for _, o in sorted(snap.owners.items())),
            candidates=tuple(sorted(snap.ready)),
            handover=snap.handover,
        )

    async def events(self, from_revision: int = 0) -> AsyncIterator[ClusterEvent]:
        """Cluster events in revision order, from from_revision (inclusive) or from now (0)."""
        async for ev in self.store.watch_prefix(self.keys.prefix(), from_revision):
            event = self._event(ev)
            if event is not None:
                yield event

    def _event(self, ev: WatchEvent) -> ClusterEvent | None:
        rev, deleted = ev.kv.mod_revision, ev.kind == "delete"
        if ev.kv.key == self.keys.leader:
            if deleted:
                old = record_from_doc(LeaderRecord, decode(ev.prev.value)) if ev.prev else None
                return ClusterEvent(
                    rev, EventType.LEADER_STEPPED_DOWN, old.node_id if old else "", leader=old
                )
            if ev.kv.version != 1:
                return None  # a note update, not a new leader
            new = record_from_doc(LeaderRecord, decode(ev.kv.value))
            return ClusterEvent(rev, EventType.LEADER_ELECTED, new.node_id, leader=new)
        if ev.kv.key == self.keys.handover and not deleted:
            h = record_from_doc(Handover, decode(ev.kv.value))
            kind = {
                "started": EventType.HANDOVER_STARTED,
                "completed": EventType.HANDOVER_COMPLETED,
            }.get(h.state, EventType.HANDOVER_ABORTED)
            return ClusterEvent(rev, kind, h.to_node, handover=h)
        parsed = self.keys.parse(ev.kv.key)
        if parsed is None:
            return None
        kind_, name = parsed
        if kind_ == Kind.NODE:
            if deleted:
                return ClusterEvent(rev, EventType.NODE_LEFT, name)
            if ev.kv.version != 1:
                return None
            return ClusterEvent(
                rev,
                EventType.NODE_JOINED,
                name,
                registration=record_from_doc(Registration, decode(ev.kv.value)),
            )
        if kind_ == Kind.DESIGNATION and not deleted:
            return ClusterEvent(
                rev,
                EventType.DESIGNATION_CHANGED,
                name,
                designation=designation_from_doc(name, decode(ev.kv.value)),
            )
        if kind_ == Kind.SERVICE:
            if deleted:
                return ClusterEvent(rev, EventType.SERVICE_DELETED, name)
            return ClusterEvent(
                rev, EventType.SERVICE_APPLIED, name, service=service_from_doc(decode(ev.kv.value))
            )
        return None


def _check_enum(value: object, enum: type[Role] | type[Serving], field: str) -> None:
    if value not in enum.__members__.values():
        allowed = ", ".join(str(m) for m in enum)
        raise ValidationError([f"{field}: {value!r} is not one of {allowed}"])
