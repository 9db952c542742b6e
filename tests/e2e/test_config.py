"""A deployable tcphopd: a TOML config file, TCPHOP_* environment variables, flags, in that
order of precedence; a bad file is refused with its name and the key; --version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from cluster.keys import Keys
from cluster.store.embedded import free_port
from tests.conftest import clusterctl, tls_for, wait_for

pytestmark = [pytest.mark.etcd, pytest.mark.e2e]


def tcphopd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TCPHOP_")}
    return subprocess.run(
        [sys.executable, "-m", "cluster", *args],
        capture_output=True,
        text=True,
        env=clean | (env or {}),
        timeout=30,
        check=False,
    )


def node_file(tmp_path: Path, etcd_url: str, keys: Keys, node_id: str) -> tuple[Path, str]:
    tls = tls_for(node_id)
    endpoint = f"127.0.0.1:{free_port()}"
    path = tmp_path / f"{node_id}.toml"
    path.write_text(
        f'node-id = "{node_id}"\netcd = "{etcd_url}"\nlisten = "{endpoint}"\n'
        f'etcd-prefix = "{keys.root}"\nhttp-listen = "127.0.0.1:{free_port()}"\n'
        f'tls-ca = "{tls.ca}"\ntls-cert = "{tls.cert}"\ntls-key = "{tls.key}"\n'
        'lease-ttl = 2\ncpu-scope = "process-group"\nlog-json = true\n'
    )
    return path, endpoint


def test_a_node_started_with_only_a_config_file_joins_the_cluster(
    etcd_url: str, keys: Keys, tmp_path: Path
) -> None:
    path, endpoint = node_file(tmp_path, etcd_url, keys, "n1")
    log = tmp_path / "n1.log"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TCPHOP_")}
    with log.open("wb") as out:  # not one flag: the file named by the environment
        proc = subprocess.Popen(
            [sys.executable, "-m", "cluster"],
            stdout=out, stderr=subprocess.STDOUT, env=clean | {"TCPHOP_CONFIG": str(path)},
        )  # fmt: skip
    try:
        wait_for(lambda: "daemon_started" in log.read_text() or proc.poll() is not None, 15,
                 "n1 to start")  # fmt: skip
        assert proc.poll() is None, log.read_text()
        listed = clusterctl("nodes", "list", "-o", "json", endpoint=endpoint)
        assert listed.returncode == 0, listed.stderr
        nodes = json.loads(listed.stdout)
        assert [n["node_id"] for n in nodes] == ["n1"]
        assert endpoint in listed.stdout
    finally:
        proc.kill()
        proc.wait()


def test_flags_override_the_environment_which_overrides_the_file(
    etcd_url: str, keys: Keys, tmp_path: Path
) -> None:
    path, endpoint = node_file(tmp_path, etcd_url, keys, "n2")
    shown = tcphopd("--config", str(path), "--check-config")
    assert shown.returncode == 0, shown.stderr
    assert f'listen = "{endpoint}"  # file' in shown.stdout
    assert "leader-ttl = 2  # default" in shown.stdout
    env = {"TCPHOP_LISTEN": "127.0.0.1:7", "TCPHOP_LEADER_TTL": "3"}
    shown = tcphopd("--config", str(path), "--check-config", env=env)
    assert 'listen = "127.0.0.1:7"  # environment' in shown.stdout
    assert "leader-ttl = 3  # environment" in shown.stdout
    shown = tcphopd("--config", str(path), "--check-config", "--listen", "127.0.0.1:8", env=env)
    assert 'listen = "127.0.0.1:8"  # flag' in shown.stdout
    assert "leader-ttl = 3  # environment" in shown.stdout
    shown = tcphopd("--check-config", env={"TCPHOP_CONFIG": str(path)})
    assert 'node-id = "n2"  # file' in shown.stdout  # the file named by the environment


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("lease-ttl = 0", "key 'lease-ttl': 0 must be >= 1"),
        ("lease-ttl = 'two'", "key 'lease-ttl': expected an integer, got 'two'"),
        ("listen = '127.0.0.1'", "key 'listen': '127.0.0.1' is not of the form HOST:PORT"),
        ("etcd-timeout = 3", "unknown key 'etcd-timeout'"),
    ],
)
def test_a_bad_config_file_exits_2_naming_the_file_and_the_key(
    etcd_url: str, keys: Keys, tmp_path: Path, line: str, expected: str
) -> None:
    path, _ = node_file(tmp_path, etcd_url, keys, "n3")
    text = path.read_text()
    key = line.split(" = ")[0]
    path.write_text(
        "\n".join(x for x in text.splitlines() if not x.startswith(key)) + f"\n{line}\n"
    )
    done = tcphopd("--config", str(path))
    assert done.returncode == 2, done.stderr
    assert f"{path}: {expected}" in " ".join(done.stderr.split())
    assert "daemon_started" not in done.stdout + done.stderr


def test_an_environment_value_that_is_wrong_is_named_by_its_variable(tmp_path: Path) -> None:
    done = tcphopd("--node-id", "n4", "--insecure", env={"TCPHOP_LEASE_TTL": "0"})
    assert done.returncode == 2
    assert "TCPHOP_LEASE_TTL (--lease-ttl): 0 must be >= 1" in " ".join(done.stderr.split())


@pytest.mark.parametrize("action", ["TCPHOP_CHECK_CONFIG", "TCPHOP_TEARDOWN"])
def test_actions_are_flags_only_never_environment(tmp_path: Path, action: str) -> None:
    """An action variable in a unit's environment must not turn a start into a dry run or a
    teardown: the daemon starts (and keeps retrying an etcd that is not there)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TCPHOP_")}
    log = tmp_path / "n5.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cluster", "--node-id", "n5", "--insecure", "--etcd",
             f"http://127.0.0.1:{free_port()}", "--listen", f"127.0.0.1:{free_port()}",
             "--http-listen", "off"],
            stdout=out, stderr=subprocess.STDOUT, env=clean | {action: "1"},
        )  # fmt: skip
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=3)  # a dry run or a teardown would have ended by now
    finally:
        proc.kill()
        proc.wait()
    assert "listen = " not in log.read_text()


def test_both_commands_print_the_package_version() -> None:
    assert tcphopd("--version").stdout.strip() == f"tcphopd, version {version('tcphop')}"
    done = clusterctl("--version")
    assert done.stdout.strip() == f"clusterctl, version {version('tcphop')}"
