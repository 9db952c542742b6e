"""MemoryStore: the Store protocol in memory, with etcd v3's semantics, for fast tests.

One global revision bumped by every write, create/mod revisions and versions per key, leases
that expire on the event loop's clock and delete their keys, transactions with compares,
watches that replay history from a revision and raise RevisionCompacted below the compaction
point. tests/contract/ runs one suite against this and EtcdStore, so the two cannot drift.
`outage()` makes every call raise StoreUnavailable, as an unreachable etcd would.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import AsyncIterator, Sequence

from cluster.errors import LeaseExpired, RevisionCompacted, StoreUnavailable
from cluster.store.base import (
    Compare,
    Delete,
    EventKind,
    KeyValue,
    LeaseId,
    Put,
    Revision,
    TxnResult,
    WatchEvent,
)

_OPS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
}


class MemoryStore:
    def __init__(self) -> None:
        self.endpoints = ("memory",)
        self.revision = 1
        self.data: dict[bytes, KeyValue] = {}
        self.leases: dict[int, tuple[int, asyncio.TimerHandle | None]] = {}
        self.history: list[tuple[int, WatchEvent]] = []
        self.compacted = 0
        self.watchers: list[asyncio.Queue[WatchEvent]] = []
        self.unavailable = False
        self._ids = itertools.count(0x1000)

    def outage(self, on: bool = True) -> None:
        self.unavailable = on

    def _check(self) -> None:
        if self.unavailable:
            raise StoreUnavailable("memory store: outage")

    # --- writes ---------------------------------------------------------------------------

    def _emit(self, event: WatchEvent) -> None:
        self.history.append((self.revision, event))
        for queue in self.watchers:
            queue.put_nowait(event)

    def _put(self, key: bytes, value: bytes, lease: LeaseId | None) -> None:
        if lease and lease not in self.leases:
            raise LeaseExpired(f"lease {lease:x} not found")
        old = self.data.get(key)
        kv = KeyValue(
            key,
            value,
            old.create_revision if old else self.revision,
            self.revision,
            old.version + 1 if old else 1,
            lease or 0,
        )
        self.data[key] = kv
        self._emit(WatchEvent(EventKind.PUT, kv, old))

    def _delete(self, key: bytes) -> bool:
        old = self.data.pop(key, None)
        if old is not None:
            self._emit(
                WatchEvent(EventKind.DELETE, KeyValue(key, b"", 0, self.revision, 0, 0), old)
            )
        return old is not None

    def _apply(self, ops: Sequence[Put | Delete]) -> bool:
        """Apply ops as one revision; True if any changed something."""
        self.revision += 1
        changed = False
        for op in ops:
            if isinstance(op, Put):
                self._put(op.key, op.value, op.lease)
                changed = True
            else:
                changed = self._delete(op.key) or changed
        if not changed:
            self.revision -= 1
        return changed

    async def put(self, key: bytes, value: bytes, lease: LeaseId | None = None) -> Revision:
        self._check()
        self._apply([Put(key, value, lease)])
        return Revision(self.revision)

    async def delete(self, key: bytes) -> bool:
        self._check()
        return self._apply([Delete(key)])

    def _holds(self, c: Compare) -> bool:
        kv = self.data.get(c.key)
        actual: int | bytes
        if c.target == "value":
            actual = kv.value if kv else b""
            if kv is None:
                return False  # etcd: a value compare on a missing key fails
        else:
            field = {"create": "create_revision", "mod": "mod_revision", "version": "version"}
            actual = getattr(kv, field[c.target]) if kv else 0
        return bool(_OPS[c.op](actual, c.value))

    async def txn(
        self,
        compares: Sequence[Compare],
        success: Sequence[Put | Delete],
        failure: Sequence[Put | Delete] = (),
    ) -> TxnResult:
        self._check()
        ok = all(self._holds(c) for c in compares)
        current = {} if ok else {c.key: self.data.get(c.key) for c in compares}
        self._apply(success if ok else failure)
        return TxnResult(ok, Revision(self.revision), current)

    async def create(self, key: bytes, value: bytes, lease: LeaseId | None = None) -> TxnResult:
        return await self.txn([Compare(key, "create", "==", 0)], [Put(key, value, lease)])

    # --- reads ----------------------------------------------------------------------------

    async def get(self, key: bytes) -> KeyValue | None:
        self._check()
        return self.data.get(key)

    async def get_prefix(self, prefix: bytes) -> tuple[list[KeyValue], Revision]:
        self._check()
        kvs = [kv for k, kv in sorted(self.data.items()) if k.startswith(prefix)]
        return kvs, Revision(self.revision)

    # --- leases ---------------------------------------------------------------------------

    def _arm(self, lease: int, ttl_s: int) -> None:
        _, old = self.leases.get(lease, (ttl_s, None))
        if old is not None:
            old.cancel()
        timer = asyncio.get_running_loop().call_later(ttl_s, self._expire, lease)
        self.leases[lease] = (ttl_s, timer)

    def _expire(self, lease: int) -> None:
        if self.leases.pop(lease, None) is None:
            return
        doomed = [k for k, kv in self.data.items() if kv.lease == lease]
        if doomed:
            self._apply([Delete(k) for k in doomed])

    async def grant_lease(self, ttl_s: int) -> tuple[LeaseId, int]:
        self._check()
        lease = next(self._ids)
        self._arm(lease, ttl_s)
        return LeaseId(lease), ttl_s

    async def keepalive(self, lease: LeaseId) -> int:
        self._check()
        if lease not in self.leases:
            raise LeaseExpired(f"lease {lease:x} has expired")
        ttl_s = self.leases[lease][0]
        self._arm(lease, ttl_s)
        return ttl_s

    async def revoke(self, lease: LeaseId) -> None:
        self._check()
        found = self.leases.get(lease)
        if found is not None and found[1] is not None:
            found[1].cancel()
        self._expire(lease)

    # --- watches --------------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        self._check()
        self.compacted = max(self.compacted, revision)
        cut = bisect.bisect_left([r for r, _ in self.history], revision)
        del self.history[:cut]

    async def watch_prefix(self, prefix: bytes, start_revision: int) -> AsyncIterator[WatchEvent]:
        self._check()
        if start_revision and start_revision < self.compacted:
            raise RevisionCompacted(self.compacted)
        queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        if start_revision:
            for revision, event in self.history:
                if revision >= start_revision:
                    queue.put_nowait(event)
        self.watchers.append(queue)
        try:
            while True:
                event = await queue.get()
                if self.unavailable:
                    raise StoreUnavailable("memory store: outage")
                if event.kv.key.startswith(prefix):
                    yield event
        finally:
            self.watchers.remove(queue)

    async def close(self) -> None:
        for lease, (_, timer) in list(self.leases.items()):
            if timer is not None:
                timer.cancel()
            self.leases.pop(lease, None)
