"""The Store protocol: the part of etcd's API that tcphop uses.

Semantics are etcd v3's: every write bumps one global revision; keys carry create and mod
revisions; a key put with a lease is deleted when the lease expires or is revoked; a watch
delivers every change after its start revision in revision order. Every call has a deadline
and raises StoreUnavailable when the store cannot answer within it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, NewType, Protocol

LeaseId = NewType("LeaseId", int)
Revision = NewType("Revision", int)


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int


class EventKind(StrEnum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    kind: EventKind
    kv: KeyValue  # for DELETE: key and mod_revision only
    prev: KeyValue | None = None  # the value before this change, when etcd still has it


@dataclass(frozen=True, slots=True)
class Compare:
    """A transaction guard: `target` of `key` `op` `value` (etcd's Compare)."""

    key: bytes
    target: Literal["create", "mod", "version", "value"]
    op: Literal["==", "!=", "<", ">"]
    value: int | bytes


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes
    lease: LeaseId | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    key: bytes


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: Revision
    # For a failed transaction: the current value of each compared key (None if absent).
    current: dict[bytes, KeyValue | None]


class Store(Protocol):
    """Access to a consistent key-value store with leases and watches (etcd v3)."""

    endpoints: tuple[str, ...]

    async def get(self, key: bytes) -> KeyValue | None:
        """The key's current value, or None."""
        ...

    async def get_prefix(self, prefix: bytes) -> tuple[list[KeyValue], Revision]:
        """All keys under prefix, sorted by key, with the revision they were read at."""
        ...

    async def put(self, key: bytes, value: bytes, lease: LeaseId | None = None) -> Revision:
        """Write unconditionally; return the new revision."""
        ...

    async def delete(self, key: bytes) -> bool:
        """Delete; return whether the key existed."""
        ...

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Put | Delete],
        failure: Sequence[Put | Delete] = (),
    ) -> TxnResult:
        """Atomically apply `success` if every compare holds, else `failure`."""
        ...

    async def create(self, key: bytes, value: bytes, lease: LeaseId | None = None) -> TxnResult:
        """Put only if the key does not exist; on failure `current` holds the existing value."""
        ...

    async def grant_lease(self, ttl_s: int) -> tuple[LeaseId, int]:
        """Grant a lease; return its id and the TTL etcd granted (it may round up)."""
        ...

    async def keepalive(self, lease: LeaseId) -> int:
        """Refresh a lease; return its remaining TTL. Raise LeaseExpired when it is gone."""
        ...

    async def revoke(self, lease: LeaseId) -> None:
        """Revoke a lease, deleting its keys. Revoking an expired lease is not an error."""
        ...

    def watch_prefix(self, prefix: bytes, start_revision: int) -> AsyncIterator[WatchEvent]:
        """Changes under prefix from start_revision (inclusive; 0 = from now), in order.

        Raises RevisionCompacted when the start is compacted, StoreUnavailable when the
        stream breaks; the caller resumes from the last revision it saw + 1.
        """
        ...

    async def compact(self, revision: int) -> None:
        """Drop history before revision."""
        ...

    async def close(self) -> None: ...
