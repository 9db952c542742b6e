"""EtcdStore against a real etcd: revisions, CAS, leases, watches, failover, outages."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from cluster.errors import LeaseExpired, RevisionCompacted, StoreUnavailable
from cluster.keys import Keys
from cluster.store.base import Compare, Delete, EventKind, Put
from cluster.store.embedded import EmbeddedEtcd, free_port
from cluster.store.etcd import EtcdStore, parse_endpoints

pytestmark = pytest.mark.etcd


async def test_put_get_and_prefix_listing_in_key_order(store: EtcdStore, keys: Keys) -> None:
    root = keys.prefix()
    for name in (b"b", b"a", b"c"):
        await store.put(root + name, name * 2)
    assert await store.get(root + b"zz") is None
    kv = await store.get(root + b"a")
    assert kv is not None and kv.value == b"aa" and kv.version == 1
    kvs, revision = await store.get_prefix(root)
    assert [k.key for k in kvs] == [root + b"a", root + b"b", root + b"c"]
    assert revision >= max(k.mod_revision for k in kvs)


async def test_create_only_if_absent_reports_the_holder(store: EtcdStore, keys: Keys) -> None:
    key = keys.prefix() + b"x"
    first = await store.create(key, b"one")
    second = await store.create(key, b"two")
    assert first.succeeded and not second.succeeded
    holder = second.current[key]
    assert holder is not None and holder.value == b"one"
    assert (await store.get(key)).value == b"one"  # type: ignore[union-attr]


async def test_txn_on_mod_revision_fences_stale_writers(store: EtcdStore, keys: Keys) -> None:
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


async def test_lease_keeps_key_while_refreshed_and_expiry_deletes_it(
    store: EtcdStore, keys: Keys
) -> None:
    key = keys.prefix() + b"leased"
    lease, granted = await store.grant_lease(1)
    assert granted == 1
    await store.put(key, b"x", lease)
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


async def test_revoke_deletes_keys_and_revoking_twice_is_fine(store: EtcdStore, keys: Keys) -> None:
    key = keys.prefix() + b"r"
    lease, _ = await store.grant_lease(5)
    await store.put(key, b"x", lease)
    await store.revoke(lease)
    assert await store.get(key) is None
    await store.revoke(lease)


async def test_watch_delivers_changes_in_revision_order_from_a_revision(
    store: EtcdStore, keys: Keys
) -> None:
    root = keys.prefix()
    first = await store.put(root + b"a", b"1")
    await store.put(root + b"b", b"2")
    await store.delete(root + b"a")
    await store.put(keys.root.encode()[:-1] + b"-other/x", b"outside")  # not under root
    seen = []
    async for ev in store.watch_prefix(root, first):
        seen.append((ev.kind, ev.kv.key, ev.kv.mod_revision))
        if len(seen) == 3:
            break
    assert [(k, key) for k, key, _ in seen] == [
        (EventKind.PUT, root + b"a"),
        (EventKind.PUT, root + b"b"),
        (EventKind.DELETE, root + b"a"),
    ]
    revisions = [r for _, _, r in seen]
    assert revisions == sorted(revisions) and revisions[0] == first


async def test_watch_from_a_compacted_revision_says_so(
    private_etcd: EmbeddedEtcd, keys: Keys
) -> None:
    store = EtcdStore(private_etcd.url)
    try:
        first = await store.put(keys.prefix() + b"a", b"1")
        latest = await store.put(keys.prefix() + b"a", b"2")
        await store.compact(latest)
        with pytest.raises(RevisionCompacted) as info:
            async for _ in store.watch_prefix(keys.prefix(), first):
                pass
        assert info.value.compacted_revision == latest
    finally:
        await store.close()


async def test_a_dead_first_endpoint_fails_over_to_the_next(etcd_url: str, keys: Keys) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    store = EtcdStore(f"{dead},{etcd_url}", timeout_s=3)
    try:
        await store.put(keys.prefix() + b"k", b"v")
        assert (await store.get(keys.prefix() + b"k")).value == b"v"  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_unreachable_or_paused_etcd_raises_store_unavailable_within_the_deadline(
    private_etcd: EmbeddedEtcd, keys: Keys
) -> None:
    store = EtcdStore(private_etcd.url, timeout_s=0.5)
    try:
        await store.put(keys.prefix() + b"k", b"v")
        assert private_etcd.process is not None
        private_etcd.process.send_signal(signal.SIGSTOP)
        start = time.monotonic()
        with pytest.raises(StoreUnavailable, match="did not answer within 0.5 s"):
            await store.get(keys.prefix() + b"k")
        assert time.monotonic() - start < 1.5
        private_etcd.process.send_signal(signal.SIGCONT)
        assert (await store.get(keys.prefix() + b"k")).value == b"v"  # type: ignore[union-attr]
    finally:
        await store.close()
    nowhere = EtcdStore(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    with pytest.raises(StoreUnavailable):
        await nowhere.get(b"/x")
    await nowhere.close()


@pytest.mark.parametrize("bad", ["", "ftp://h:1", "http://h", "http://h:1/path", "h:x"])
def test_malformed_etcd_endpoints_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="endpoint|no etcd"):
        parse_endpoints(bad)


def test_endpoints_accept_urls_and_host_port() -> None:
    assert parse_endpoints("http://127.0.0.1:2379, 10.0.0.2:2379") == (
        "127.0.0.1:2379",
        "10.0.0.2:2379",
    )
