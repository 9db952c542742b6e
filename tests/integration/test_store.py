"""EtcdStore against a real etcd, beyond the store contract (tests/contract/): several
endpoints, failover, outages, endpoint parsing."""

from __future__ import annotations

import asyncio
import signal
import socket
import time

import pytest

from cluster.errors import StoreUnavailable
from cluster.keys import Keys
from cluster.store.embedded import EmbeddedEtcd, free_port
from cluster.store.endpoints import parse_endpoints
from cluster.store.etcd import EtcdStore
from tests.conftest import pause

pytestmark = pytest.mark.etcd


async def test_a_dead_first_endpoint_fails_over_to_the_next(etcd_url: str, keys: Keys) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    store = EtcdStore(f"{dead},{etcd_url}", timeout_s=3)
    try:
        await store.put(keys.prefix() + b"k", b"v")
        assert (await store.get(keys.prefix() + b"k")).value == b"v"  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_a_member_that_answers_nothing_is_left_for_the_next_call(
    etcd_url: str, keys: Keys
) -> None:
    """A vanished member (a killed container) accepts nothing and refuses nothing: the call
    that timed out on it, by the store's deadline or by the caller's, sends the next call to
    the next member."""
    with socket.socket() as silent:  # listens, never answers: a black hole
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        hole = f"http://127.0.0.1:{silent.getsockname()[1]}"
        store = EtcdStore(f"{hole},{etcd_url}", timeout_s=0.5)
        try:
            with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{silent.getsockname()[1]}"):
                await store.get(keys.prefix() + b"k")
            await store.put(keys.prefix() + b"k", b"v")  # the next member answers
            store._current = 0  # the black hole again, now abandoned by the caller's deadline
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await store.get(keys.prefix() + b"k")
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
        pause(private_etcd.process.pid)
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
