"""etcd with authentication on: tcphop's store logs in with a user and a password (and renews
its token); without them, or with a wrong password, etcd refuses."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cluster.errors import StoreError
from cluster.store.embedded import EmbeddedEtcd
from cluster.store.etcd import EtcdStore
from tests.integration.test_hostile_state import ETCDCTL

pytestmark = pytest.mark.etcd


def etcdctl(url: str, *args: str) -> None:
    subprocess.run(
        [ETCDCTL, "--endpoints", url, *args],
        check=True,
        capture_output=True,
        env={**os.environ, "ETCDCTL_API": "3"},
    )


async def test_a_user_and_password_log_in_and_nothing_else_does(tmp_path: Path) -> None:
    server = EmbeddedEtcd(tmp_path / "etcd")
    server.start()
    try:
        etcdctl(server.url, "user", "add", "root", "--new-user-password", "s3cret")
        etcdctl(server.url, "user", "grant-role", "root", "root")
        etcdctl(server.url, "auth", "enable")
        store = EtcdStore(server.url, auth=("root", "s3cret"))
        await store.put(b"/t/x", b"1")
        assert (await store.get(b"/t/x")).value == b"1"  # type: ignore[union-attr]
        lease, _ = await store.grant_lease(5)
        assert await store.keepalive(lease) >= 1
        store._conns[0].token.value = "expired"  # as after etcd's token TTL: logs in again
        assert (await store.get(b"/t/x")).value == b"1"  # type: ignore[union-attr]
        await store.close()
        for auth in (None, ("root", "wrong")):
            stranger = EtcdStore(server.url, auth=auth)
            with pytest.raises(StoreError):
                await stranger.get(b"/t/x")
            await stranger.close()
    finally:
        server.stop()


def test_tcphopd_takes_the_password_from_a_file_or_the_environment_only(
    tmp_path: Path, etcd_url: str
) -> None:
    import sys

    base = [sys.executable, "-m", "cluster", "--node-id", "n1", "--etcd", etcd_url]
    base += ["--listen", "127.0.0.1:1", "--insecure", "--etcd-user", "tcphop"]
    env = {k: v for k, v in os.environ.items() if k != "TCPHOP_ETCD_PASSWORD"}
    missing = subprocess.run(base, capture_output=True, text=True, timeout=30, env=env)
    assert missing.returncode == 2 and "--etcd-password-file or TCPHOP_ETCD_PASSWORD" in (
        missing.stderr
    )
    absent = subprocess.run(
        [*base, "--etcd-password-file", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert absent.returncode == 2 and "--etcd-password-file" in absent.stderr
