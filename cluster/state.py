"""ClusterState: reading and changing the shared state in etcd.

Reads decide from one `Snapshot` (cluster/snapshot.py: one range request at one revision,
every value through the guarded decoder). Writes are transactions that compare the mod revisions
the decision read, so two operators racing never lose an update silently and never both win:
the loser re-reads and re-applies its change. Every service write also bumps the
`services-generation` key and compares it, so VIP:port uniqueness holds across services; a
designation write compares every designation, so the one-primary rule holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from cluster.documents import (
    designation_to_doc,
    normalize_service,
    service_to_doc,
)
from cluster.errors import NotFound, ValidationError
from cluster.events import event_of
from cluster.keys import Keys
from cluster.limits import MAX_APPLY_SERVICES, MAX_SERVICES, MAX_SPEC_BYTES
from cluster.model import (
    ApplyResult,
    ClusterEvent,
    ClusterStatus,
    Designation,
    LeaderRecord,
    Node,
    Role,
    ServiceSpec,
    Serving,
)
from cluster.snapshot import (
    Snapshot,
    encode,
    guarded,
    parse_service_value,
    read_leader,
    read_snapshot,
)
from cluster.store.base import Compare, Delete, Put, Revision, Store
from cluster.validation import (
    endpoint_problems,
    validate_enum,
    validate_node_id,
    validate_service,
    validate_weight,
)

CAS_ATTEMPTS = 5
_T = TypeVar("_T")


class ClusterState:
    def __init__(self, store: Store, keys: Keys, answered_by: str = "") -> None:
        self.store, self.keys, self.answered_by = store, keys, answered_by

    async def snapshot(self) -> Snapshot:
        kvs, revision = await self.store.get_prefix(self.keys.prefix())
        return read_snapshot(kvs, revision, self.keys)

    async def leader(self) -> LeaderRecord | None:
        """The leader as etcd says now (one read); None when none leads or the key is bad."""
        kv = await self.store.get(self.keys.leader)
        return read_leader(kv, []) if kv is not None else None

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
        validate_enum(role, Role, "role")
        role = Role(role)

        async def attempt(snap: Snapshot) -> tuple[Designation, list[str]] | None:
            if node_id not in snap.designations and not force:
                raise NotFound(
                    f"node {node_id!r} is unknown: it never registered; check the "
                    "id, or use --force to designate it before it joins"
                )
            vips = snap.unannounceable(node_id)
            if role != Role.NONE and vips:
                registration = snap.registrations[node_id]
                raise ValidationError(
                    [
                        f"role: {node_id} cannot announce {', '.join(vips)} (it announces "
                        f"{', '.join(registration.announces)}): as "
                        f"{role} it could lead and the VIPs would go dark; designate a node "
                        "on the VIPs' segment, or start it with --announce"
                    ]
                )
            new = replace(snap.designations.get(node_id, Designation(node_id)), role=role)
            changes = [new]
            if role == Role.PRIMARY:
                changes += [
                    replace(d, role=Role.BACKUP)
                    for n, d in snap.designations.items()
                    if n != node_id and d.role == Role.PRIMARY
                ]
            if not await self._write_designations(snap, changes):
                return None
            return new, self._designate_warnings(snap, new, changes[1:])

        return await self._compare_and_swap(attempt, f"the designation of {node_id!r}")

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
        """Compare every designation the decision read, and the changed ones' absence where
        they were absent: a concurrent designate of another node makes this one retry."""
        ids = set(snap.designation_revisions) | {d.node_id for d in changes}
        guards = [
            Compare(self.keys.designation(n), "mod", "==", snap.designation_revisions.get(n, 0))
            for n in sorted(ids)
        ]
        ops = [
            Put(self.keys.designation(d.node_id), encode(designation_to_doc(d))) for d in changes
        ]
        return (await self.store.txn(guards, ops)).succeeded

    async def set_serving(
        self, node_id: str, serving: Serving, weight: int | None = None
    ) -> Designation:
        validate_node_id(node_id)
        validate_enum(serving, Serving, "serving")
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
        async def attempt(snap: Snapshot) -> Designation | None:
            if node_id not in snap.designations:
                raise NotFound(
                    f"node {node_id!r} is unknown: it never registered; check the "
                    "id, or start its tcphopd"
                )
            new = change(snap.designations[node_id])
            return new if await self._write_designations(snap, [new]) else None

        return await self._compare_and_swap(attempt, f"the designation of {node_id!r}")

    async def _compare_and_swap(
        self, attempt: Callable[[Snapshot], Awaitable[_T | None]], what: str
    ) -> _T:
        """Decide from a fresh snapshot and write in a transaction that compares what the
        decision read; when another writer won meanwhile (None), decide again."""
        for _ in range(CAS_ATTEMPTS):
            done = await attempt(await self.snapshot())
            if done is not None:
                return done
        raise RuntimeError(f"{what} kept changing under us; try again")

    # --- services ------------------------------------------------------------------------

    async def list_services(self) -> list[ServiceSpec]:
        return [s for _, s in sorted((await self.snapshot()).services.items())]

    async def get_service(self, name: str) -> ServiceSpec:
        key = self.keys.service(name)
        kv = await self.store.get(key)
        if kv is None:
            raise NotFound(f"service {name!r} does not exist (see `clusterctl service list`)")
        malformed: list[str] = []
        spec = guarded(lambda: parse_service_value(kv.value), key, malformed)
        if spec is None:
            raise NotFound(
                f"service {name!r} is stored but its value is malformed (written by hand or by "
                f"a bug; see the daemon log); re-apply it or `clusterctl service delete {name}`"
            )
        return spec

    async def apply_service(self, spec: ServiceSpec) -> ApplyResult:
        """Create or replace a service; validate it and its VIP:port against the others."""
        return (await self.apply_services([spec]))[0]

    async def apply_services(self, specs: Sequence[ServiceSpec]) -> list[ApplyResult]:
        """Create or replace services in one transaction: all are stored, or none.

        Each is validated, VIP:ports must be unique among them and against every other stored
        service, and the transaction compares the services generation, so a concurrent apply
        of another service cannot take the same VIP:port.
        """
        specs = self._validated(specs)

        async def attempt(snap: Snapshot) -> list[ApplyResult] | None:
            others = [s for n, s in snap.services.items() if n not in {p.name for p in specs}]
            problems = [p for i, spec in enumerate(specs) for p in endpoint_problems(
                spec, others + list(specs[:i]))]  # fmt: skip
            if len({*snap.services, *(s.name for s in specs)}) > MAX_SERVICES:
                problems.append(f"services: more than {MAX_SERVICES} services in the cluster")
            if problems:
                raise ValidationError(problems)
            changed = [s for s in specs if snap.services.get(s.name) != s]
            guards = [Compare(self.keys.services_generation, "mod", "==", snap.services_generation)]
            guards += [
                Compare(
                    self.keys.service(s.name), "mod", "==", snap.service_revisions.get(s.name, 0)
                )
                for s in changed
            ]
            ops = [Put(self.keys.service(s.name), encode(service_to_doc(s))) for s in changed]
            revision = snap.revision
            if changed:
                ops.append(Put(self.keys.services_generation, b"{}"))
                result = await self.store.txn(guards, ops)
                if not result.succeeded:
                    return None
                revision = result.revision
            return [self._result(s, snap, revision) for s in specs]

        return await self._compare_and_swap(attempt, "the services")

    def _validated(self, specs: Sequence[ServiceSpec]) -> list[ServiceSpec]:
        if not specs:
            raise ValidationError(["services: give at least one service"])
        if len(specs) > MAX_APPLY_SERVICES:
            raise ValidationError(
                [f"services: {len(specs)} in one call, more than {MAX_APPLY_SERVICES}"]
            )
        problems: list[str] = []
        out = []
        for spec in specs:
            try:
                validate_service(spec)
            except ValidationError as e:
                problems += e.problems
                continue
            spec = normalize_service(spec)
            size = len(encode(service_to_doc(spec)))
            if size > MAX_SPEC_BYTES:
                problems.append(
                    f"services.{spec.name}: {size} bytes stored, more than {MAX_SPEC_BYTES}"
                )
            out.append(spec)
        names = [s.name for s in specs]
        problems += [
            f"services.{n}: given twice" for n in sorted({n for n in names if names.count(n) > 1})
        ]
        if problems:
            raise ValidationError(problems)
        return out

    def _result(self, spec: ServiceSpec, snap: Snapshot, revision: int) -> ApplyResult:
        existing = snap.services.get(spec.name)
        warnings = tuple(self._pool_warnings(spec, snap))
        if existing == spec:
            return ApplyResult(spec, "unchanged", snap.service_revisions[spec.name], warnings)
        return ApplyResult(spec, "updated" if existing else "created", revision, warnings)

    def _pool_warnings(self, spec: ServiceSpec, snap: Snapshot) -> list[str]:
        known = {n.node_id for n in snap.nodes()}
        named = set(spec.pool.nodes).union(*(r.pool.nodes for r in spec.rules))
        return [f"pool names node {n!r}, which has never registered" for n in sorted(named - known)]

    async def delete_service(self, name: str) -> Revision:
        key = self.keys.service(name)
        result = await self.store.txn(
            [Compare(key, "create", ">", 0)],
            [Delete(key), Put(self.keys.services_generation, b"{}")],
        )
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
            malformed=snap.malformed,
        )

    async def events(self, from_revision: int = 0) -> AsyncIterator[ClusterEvent]:
        """Cluster events in revision order, from from_revision (inclusive) or from now (0)."""
        async for ev in self.store.watch_prefix(self.keys.prefix(), from_revision):
            event = event_of(self.keys, ev)
            if event is not None:
                yield event
