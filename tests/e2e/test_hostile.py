"""Hostile input against real tcphopd processes: a stuck leader key, stuffed etcd, forged
telemetry. Each is refused or skipped, and the cluster keeps a leader."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import grpc
import pytest

from cluster.api.v1 import cluster_pb2 as pb
from cluster.api.v1 import cluster_pb2_grpc
from cluster.keys import Keys
from cluster.sdk import ClusterClient, EventType, Role, ServiceSpec
from cluster.snapshot import decode
from cluster.store.etcd import EtcdStore
from cluster.tls import channel
from tests.conftest import Daemon, async_wait_for, clusterctl, tls_for
from tests.e2e.test_election import cluster, leader_is
from tests.integration.test_hostile_state import etcdctl_put

pytestmark = [pytest.mark.etcd, pytest.mark.e2e]
StartDaemon = Callable[..., Daemon]


async def test_an_unreadable_or_lease_less_leader_key_is_replaced(
    start_daemon: StartDaemon, etcd_url: str, keys: Keys
) -> None:
    daemons, client = await cluster(start_daemon, {"n1": Role.PRIMARY, "n2": Role.BACKUP})
    async with client:
        await async_wait_for(lambda: leader_is(client, "n1"), 5, "n1 to lead")
        term = (await client.status()).leader.term  # type: ignore[union-attr]
        seen: list[tuple[EventType, str]] = []
        # etcdctl put replaces the value and drops the lease: the key would never expire.
        etcdctl_put(etcd_url, keys.leader, b"garbage")
        await async_wait_for(
            lambda: _leads_in_a_later_term(client, term), 5, "a leader in a new term"
        )
        await client.apply_service(ServiceSpec("marker", "10.9.9.9", 1))
        async for ev in client.watch_events(from_revision=1):
            seen.append((ev.type, ev.subject))
            if (ev.type, ev.subject) == (EventType.SERVICE_APPLIED, "marker"):
                break
        malformed = seen.index((EventType.VALUE_MALFORMED, keys.leader.decode()))
        # whichever candidate clears the key and wins: the backup may, when the primary's turn
        # came while the key was unusable (it then hands back after the preempt delay)
        assert EventType.LEADER_ELECTED in [kind for kind, _ in seen[malformed:]]
        # A valid record, but held by no lease: vacant too.
        store = EtcdStore(etcd_url)
        kv = await store.get(keys.leader)
        assert kv is not None and kv.lease
        record = decode(kv.value)
        term = int(str(record["term"]))
        etcdctl_put(etcd_url, keys.leader, json.dumps(record).encode())
        await async_wait_for(
            lambda: _leads_in_a_later_term(client, term), 5, "a leader after the lease-less copy"
        )
        kv = await store.get(keys.leader)
        assert kv is not None and kv.lease  # held by a lease again
        await store.close()
        assert all(d.process.poll() is None for d in daemons.values())
        assert "leader_key_cleared" in daemons["n1"].output() + daemons["n2"].output()


async def _leads_in_a_later_term(client: ClusterClient, term: int) -> bool:
    st = await client.status()
    return st.leader is not None and st.leader.term > term


async def test_twenty_megabytes_in_etcd_still_elect_and_are_listed(
    start_daemon: StartDaemon, etcd_url: str, keys: Keys
) -> None:
    big = json.dumps({"name": "big", "vip": "10.0.0.9", "port": 80, "x": "a" * 1_400_000})
    for i in range(15):
        etcdctl_put(etcd_url, keys.service(f"big{i}"), big.encode())
    daemons, client = await cluster(start_daemon, {"n1": Role.PRIMARY})
    async with client:
        await async_wait_for(lambda: leader_is(client, "n1"), 10, "n1 to lead")
        await client.apply_service(ServiceSpec("web", "10.0.0.1", 80))
        st = await client.status()
        assert st.services == 1
        assert len([k for k in st.malformed if "/services/big" in k]) == 15
    shown = clusterctl("status", endpoint=daemons["n1"].endpoint)
    assert "malformed:    15 stored value(s) skipped: " in shown.stdout, shown.stderr


async def test_forged_telemetry_is_refused_and_never_stored(start_daemon: StartDaemon) -> None:
    daemons, client = await cluster(start_daemon, {"n1": Role.PRIMARY})
    async with client:
        await async_wait_for(lambda: leader_is(client, "n1"), 5, "n1 to lead")
        forged = [  # (the certificate the report comes with, the report, the answer)
            ("n1", pb.LoadReport(node_id="n1", cpu=-1e9, interval_s=1e12), "INVALID_ARGUMENT"),
            ("n1", pb.LoadReport(node_id="n1", cpu=math.nan, interval_s=0.5), "INVALID_ARGUMENT"),
            ("n7", pb.LoadReport(node_id="n7", cpu=0.1, interval_s=0.5), "NOT_FOUND"),
            ("n1", pb.LoadReport(node_id="n2", cpu=0.1, interval_s=0.5), "PERMISSION_DENIED"),
            ("admin", None, "PERMISSION_DENIED"),  # refused by role before any report is read
        ]  # fmt: skip
        for cert, report, code in forged:
            answer = await report_once(daemons["n1"].endpoint, cert, report)
            assert answer == code, (cert, report)
        loads = await client.loads()
        assert {load.report.node_id for load in loads.loads} <= {"n1"}
        assert all(0 <= load.report.cpu <= 1 for load in loads.loads)
        assert loads.refused_reports == {"invalid": 2, "unregistered": 1}


async def report_once(endpoint: str, cert: str, report: pb.LoadReport | None) -> str:
    """The status a one-report Telemetry stream ends with. The client writes nothing after the
    server may have answered: grpc.aio reports a write that fails after the server's status as
    INTERNAL instead of that status (grpc/grpc#36066), so a caller the interceptor refuses by
    role (answered before any message is read) writes nothing: `report` None."""
    async with channel(endpoint, tls_for(cert)) as node:
        call = cluster_pb2_grpc.TelemetryStub(node).Report()
        if report is not None:
            await call.write(report)
        code: grpc.StatusCode = await call.code()
        return code.name
