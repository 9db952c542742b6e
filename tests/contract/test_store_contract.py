"""One contract for both stores: MemoryStore (fast unit tests) must behave as EtcdStore on a
real etcd. Every case runs against both."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cluster.errors import LeaseExpired, RevisionCompacted, StoreUnavailable
from cluster.keys import Keys
from cluster.store.base import Compare, Delete, EventKind, Put, Store
from cluster.store.embedded import EmbeddedEtcd
from cluster.store.etcd import EtcdStore
from cluster.store.memory import MemoryStore


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        s: Store = MemoryStore()
    else:
        s = EtcdStore(request.getfixturevalue("etcd_url"))
    yield s
    await s.close()


@pytest.fixture(params=["memory", pytest.param("etcd", marks=pytest.mark.etcd)])
async def own_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A store of the test's own (compaction touches the whole key space)."""
    if request.param == "memory":
        s: Store = MemoryStore()
        yield s
        await s.close()
        return
    request.getfixturevalue("etcd_url")  # gates on etcd like the shared fixture
    server = EmbeddedEtcd(tmp_path / "etcd")
    server.start()
    s = EtcdStore(server.url)
    yield s
    await s.close()
    server.stop()


async def test_put_get_and_prefix_listing_in_key_order(store: Store, keys: Keys) -> None:
    root = keys.prefix()
    for name in (b"b", b"a", b"c"):
        await store.put(root + name, name * 2)
    assert await store.get(root + b"zz") is None
    kv = await store.get(root + b"a")
    assert kv is not None and kv.value == b"aa" and kv.version == 1
    kvs, revision = await store.get_prefix(root)
    assert [k.key for k in kvs] == [root + b"a", root + b"b", root + b"c"]
    assert revision >= max(k.mod_revision for k in kvs)
    again = await store.put(root + b"a", b"x")
    kv = await store.get(root + b"a")
    assert kv is not None and (kv.version, kv.mod_revision) == (2, again)
    assert kv.create_revision < kv.mod_revision


async def test_create_only_if_absent_reports_the_holder(store: Store, keys: Keys) -> None:
    key = keys.prefix() + b"x"
    first = await store.create(key, b"one")
    second = await store.create(key, b"two")
    assert first.succeeded and not second.succeeded
    holder = second.current[key]
    assert holder is not None and holder.value == b"one"
    assert (await store.get(key)).value == b"one"  # type: ignore[union-attr]


async def test_txn_on_mod_revision_fences_stale_writers(store: Store, keys: Keys) -> None:
    key = keys.prefix() + b"k"
    await store.put(key, b"v1")
    seen = await store.get(key)
    assert seen is not None
    await store.put(key, b"v2")  # someone else writes in between
    stale = await store.txn([Compare(key, "mod", "==", seen.mod_revision)], [Put(key, b"mine")])
    assert not stale.succeeded
    assert (await store.get(key)).value == b"v2"  # type: ignore[union-attr]
    fresh = await store.txn([Compare(key, "value", "==", b"v2")], [Delete(key)])
    assert fresh.succeeded and await store.get(key) is None
    missing = await store.txn([Compare(key, "value", "==", b"")], [Put(key, b"z")])
    assert not missing.succeeded  # a value compare on a missing key fails
    absent = await store.txn([Compare(key, "mod", "==", 0)], [Put(key, b"z")], [Delete(key)])
    assert absent.succeeded and (await store.get(key)).value == b"z"  # type: ignore[union-attr]


async def test_a_failed_txn_applies_the_failure_ops(store: Store, keys: Keys) -> None:
    key, other = keys.prefix() + b"a", keys.prefix() + b"b"
    result = await store.txn(
        [Compare(key, "create", ">", 0)], [Put(key, b"x")], [Put(other, b"fallback")]
    )
    assert not result.succeeded and result.current == {key: None}
    assert await store.get(key) is None
    assert (await store.get(other)).value == b"fallback"  # type: ignore[union-attr]


async def test_lease_keeps_key_while_refreshed_and_expiry_deletes_it(
    store: Store, keys: Keys
) -> None:
    key = keys.prefix() + b"leased"
    lease, granted = await store.grant_lease(1)
    assert granted == 1
    await store.put(key, b"x", lease)
    assert (await store.get(key)).lease == lease  # type: ignore[union-attr]
    for _ in range(6):  # 1.5 s of refreshing, longer than the TTL
        await asyncio.sleep(0.25)
        assert await store.keepalive(lease) >= 1
    assert await store.get(key) is not None
    start = time.monotonic()
    while await store.get(key) is not None:
        await asyncio.sleep(0.05)
    assert time.monotonic() - start < 2.5
    with pytest.raises(LeaseExpired):
        await store.keepalive(lease)


async def test_revoke_deletes_keys_and_revoking_twice_is_fine(store: Store, keys: Keys) -> None:
    key = keys.prefix() + b"r"
    lease, _ = await store.grant_lease(5)
    await store.put(key, b"x", lease)
    await store.revoke(lease)
    assert await store.get(key) is None
    await store.revoke(lease)


async def test_watch_delivers_changes_in_revision_order_from_a_revision(
    store: Store, keys: Keys
) -> None:
    root = keys.prefix()
    first = await store.put(root + b"a", b"1")
    await store.put(root + b"b", b"2")
    await store.delete(root + b"a")
    await store.put(keys.root.encode()[:-1] + b"-other/x", b"outside")  # not under root
    seen = []
    async for ev in store.watch_prefix(root, first):
        seen.append((ev.kind, ev.kv.key, ev.kv.mod_revision, ev.prev))
        if len(seen) == 3:
            break
    assert [(k, key) for k, key, _, _ in seen] == [
        (EventKind.PUT, root + b"a"),
        (EventKind.PUT, root + b"b"),
        (EventKind.DELETE, root + b"a"),
    ]
    revisions = [r for _, _, r, _ in seen]
    assert revisions == sorted(revisions) and revisions[0] == first
    deleted_prev = seen[2][3]
    assert deleted_prev is not None and deleted_prev.value == b"1"  # the value before the change


async def test_a_live_watch_sees_later_changes(store: Store, keys: Keys) -> None:
    root = keys.prefix()

    async def first_event() -> tuple[EventKind, bytes]:
        async for ev in store.watch_prefix(root, 0):
            return ev.kind, ev.kv.value
        raise AssertionError("the watch ended")

    watching = asyncio.create_task(first_event())
    await asyncio.sleep(0.2)
    await store.put(root + b"k", b"later")
    assert await asyncio.wait_for(watching, 5) == (EventKind.PUT, b"later")


async def test_watch_from_a_compacted_revision_says_so(own_store: Store, keys: Keys) -> None:
    store = own_store
    first = await store.put(keys.prefix() + b"a", b"1")
    latest = await store.put(keys.prefix() + b"a", b"2")
    await store.compact(latest)
    with pytest.raises(RevisionCompacted) as info:
        async for _ in store.watch_prefix(keys.prefix(), first):
            pass
    assert info.value.compacted_revision == latest


async def test_an_unknown_lease_is_refused(store: Store, keys: Keys) -> None:
    with pytest.raises(LeaseExpired):
        await store.keepalive(0x7FFF_0000_1234)  # type: ignore[arg-type]


def test_the_memory_store_reports_an_outage_like_an_unreachable_etcd() -> None:
    async def during_outage() -> None:
        s = MemoryStore()
        s.outage()
        with pytest.raises(StoreUnavailable):
            await s.get(b"/x")
        s.outage(False)
        assert await s.get(b"/x") is None

    asyncio.run(during_outage())
