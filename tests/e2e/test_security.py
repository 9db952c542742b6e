"""Mutual TLS and roles with real tcphopd processes and real certificates."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cluster.pki import init_ca, issue
from cluster.sdk import ClusterClient, PermissionDenied, Role, TlsFiles, Unavailable
from cluster.store.embedded import EmbeddedEtcd
from cluster.store.etcd import EtcdStore
from cluster.tls import Access, channel
from tests.conftest import Daemon, admin, clusterctl, tls_for

pytestmark = [pytest.mark.etcd, pytest.mark.e2e]
StartDaemon = Callable[..., Daemon]


async def test_plaintext_and_foreign_certificates_are_refused(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    d = start_daemon("n1")
    async with ClusterClient([d.endpoint], timeout_s=2, insecure=True) as plain:
        with pytest.raises(Unavailable):
            await plain.list_nodes()
    other = tmp_path / "other-ca"
    init_ca(other, "someone else's CA")
    issue(other, "admin", Access.ADMIN)
    forged = TlsFiles(admin().ca, other / "admin.crt", other / "admin.key")
    async with ClusterClient([d.endpoint], timeout_s=2, tls=forged) as stranger:
        with pytest.raises(Unavailable):
            await stranger.list_nodes()
    async with ClusterClient([d.endpoint], tls=admin()) as client:
        assert [n.node_id for n in await client.list_nodes()] == ["n1"]


async def test_a_reader_reads_but_cannot_change_anything(start_daemon: StartDaemon) -> None:
    d = start_daemon("n1")
    reader = tls_for("reader", Access.READER)
    async with ClusterClient([d.endpoint], tls=reader) as client:
        assert (await client.status()).answered_by == "n1"
        with pytest.raises(PermissionDenied, match="Designate needs the admin role"):
            await client.designate("n1", Role.PRIMARY)
    env = {"TCPHOP_TLS_CA": str(reader.ca), "TCPHOP_TLS_CERT": str(reader.cert)}
    env["TCPHOP_TLS_KEY"] = str(reader.key)
    denied = clusterctl("designate", "n1", "--role", "primary", endpoint=d.endpoint, env=env)
    assert denied.returncode == 1, denied.stderr
    assert "needs the admin role" in denied.stderr
    node = tls_for("n1")  # a node's certificate is for nodes' calls, not for operators'
    async with ClusterClient([d.endpoint], tls=node) as client:
        with pytest.raises(PermissionDenied, match="needs the reader role"):
            await client.list_nodes()


async def test_reflection_lists_the_services_to_an_admin(start_daemon: StartDaemon) -> None:
    d = start_daemon("n1")
    async with channel(d.endpoint, admin()) as ch:
        call = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        reply = await call.read()
        await call.done_writing()
    names = {s.name for s in reply.list_services_response.service}
    assert {"tcphop.v1.Cluster", "tcphop.v1.Datapath"} <= names


def test_tcphopd_wants_tls_or_insecure_by_name_and_its_own_certificate(etcd_url: str) -> None:
    base = [sys.executable, "-m", "cluster", "--node-id", "n1", "--etcd", etcd_url]
    base += ["--listen", "127.0.0.1:1"]
    bare = subprocess.run(base, capture_output=True, text=True, timeout=30)
    assert bare.returncode == 2 and "or --insecure" in bare.stderr
    n2 = tls_for("n2")
    flags = ["--tls-ca", str(n2.ca), "--tls-cert", str(n2.cert), "--tls-key", str(n2.key)]
    wrong = subprocess.run([*base, *flags], capture_output=True, text=True, timeout=30)
    assert wrong.returncode == 2 and "not a node certificate for 'n1'" in wrong.stderr


async def test_etcd_with_client_certificates_refuses_a_client_without_one(
    tmp_path: Path,
) -> None:
    pki = tmp_path / "pki"
    init_ca(pki)
    issue(pki, "etcd", None, sans=("127.0.0.1",))
    issue(pki, "n1", Access.NODE, "n1")
    server = EmbeddedEtcd(
        tmp_path / "etcd", tls=TlsFiles(pki / "ca.crt", pki / "etcd.crt", pki / "etcd.key")
    )
    server.start()
    try:
        store = EtcdStore(server.url, tls=TlsFiles(pki / "ca.crt", pki / "n1.crt", pki / "n1.key"))
        await store.put(b"/t/x", b"1")
        assert (await store.get(b"/t/x")).value == b"1"  # type: ignore[union-attr]
        await store.close()
        target = server.url.removeprefix("https://")
        creds = grpc.ssl_channel_credentials((pki / "ca.crt").read_bytes())  # no certificate
        async with grpc.aio.secure_channel(target, creds) as ch:
            from aetcd import rpc

            with pytest.raises(grpc.aio.AioRpcError) as e:
                await rpc.KVStub(ch).Range(rpc.RangeRequest(key=b"/t/x"), timeout=3)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(ValueError, match="need --etcd-ca"):
            EtcdStore(server.url)  # https without TLS files: refused, not downgraded
    finally:
        server.stop()


def test_clusterctl_pki_makes_a_ca_and_certificates_that_carry_their_role(tmp_path: Path) -> None:
    from cluster.tls import Identity, identity_of

    pki = tmp_path / "pki"
    made = clusterctl("pki", "init", "--dir", str(pki))
    assert made.returncode == 0, made.stderr
    assert (pki / "ca.key").stat().st_mode & 0o777 == 0o600
    again = clusterctl("pki", "init", "--dir", str(pki))
    assert again.returncode == 1 and "already holds a CA" in again.stderr  # never overwritten
    node = clusterctl("pki", "issue", "--dir", str(pki), "--name", "n4", "--role", "node")
    ops = clusterctl("pki", "issue", "--dir", str(pki), "--name", "ops", "--role", "admin")
    assert node.returncode == 0 and ops.returncode == 0, node.stderr + ops.stderr
    assert identity_of((pki / "n4.crt").read_bytes()) == Identity(Access.NODE, "n4")
    assert identity_of((pki / "ops.crt").read_bytes()) == Identity(Access.ADMIN)
    bad = clusterctl("pki", "issue", "--dir", str(pki), "--name", "x", "--role", "root")
    assert bad.returncode == 2  # a usage error: no such role
