"""clusterctl's live views and machine-readable results: --watch redraws on change and exits 0
on Ctrl-C, every result command takes -o json|yaml, and completion names come from the
cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import Daemon, admin, clusterctl

pytestmark = [pytest.mark.etcd, pytest.mark.e2e]
StartDaemon = Callable[..., Daemon]
SAMPLES = Path(__file__).resolve().parents[2] / "cli" / "samples" / "services.yaml"


def env_for(node: Daemon) -> dict[str, str]:
    tls = admin()
    return {**os.environ, "TCPHOP_ENDPOINT": node.endpoint, "TCPHOP_TLS_CA": str(tls.ca),
            "TCPHOP_TLS_CERT": str(tls.cert), "TCPHOP_TLS_KEY": str(tls.key)}  # fmt: skip


def test_watch_redraws_on_change_and_ctrl_c_exits_0(start_daemon: StartDaemon) -> None:
    node = start_daemon("n1")
    watching = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "service", "list", "--watch", "--interval", "0.2"],
        env=env_for(node),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2.0)  # about ten looks at an unchanged view: drawn once
        changed = clusterctl("service", "apply", "-f", str(SAMPLES), endpoint=node.endpoint)
        assert changed.returncode == 0, changed.stderr
        time.sleep(1.0)
    finally:
        watching.send_signal(signal.SIGINT)
        try:
            out, err = watching.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            watching.kill()  # never leave it running (and warning) into the next test
            watching.communicate()
            raise
    assert watching.returncode == 0, err
    versions = out.split("--- ")[1:]
    assert len(versions) == 2, out  # the first view, and the one after the apply
    assert "shop" not in versions[0] and "shop" in versions[1] and "web" in versions[1]


def test_results_in_json_and_yaml(start_daemon: StartDaemon) -> None:
    node = start_daemon("n1")
    e = node.endpoint
    designated = json.loads(clusterctl("designate", "n1", "--role", "backup", "-o", "json",
                                       endpoint=e).stdout)  # fmt: skip
    assert designated["designation"]["role"] == "backup"
    served = yaml.safe_load(clusterctl("server", "disable", "n1", "-o", "yaml", endpoint=e).stdout)
    assert served["serving"] == "disabled" and served["node_id"] == "n1"
    applied = json.loads(clusterctl("service", "apply", "-f", str(SAMPLES), "-o", "json",
                                    endpoint=e).stdout)  # fmt: skip
    assert [(r["service"], r["result"]) for r in applied] == [
        ("web", "created"),
        ("shop", "created"),
    ]
    assert any("never registered" in w for r in applied for w in r["warnings"])
    deleted = clusterctl("service", "delete", "web", "-o", "yaml", endpoint=e)
    assert yaml.safe_load(deleted.stdout) == {"service": "web", "result": "deleted"}
    events = clusterctl("events", "--from-revision", "1", "--count", "2", "-o", "yaml", endpoint=e)
    docs = [d for d in yaml.safe_load_all(events.stdout) if d]
    assert len(docs) == 2 and all("revision" in d and "type" in d for d in docs), events.stdout
    top = yaml.safe_load(clusterctl("top", "-o", "yaml", endpoint=e).stdout)
    assert "loads" in top and "term" in top


def test_completion_scripts_and_names_from_the_cluster(start_daemon: StartDaemon) -> None:
    node = start_daemon("n1")
    assert (
        clusterctl("service", "apply", "-f", str(SAMPLES), endpoint=node.endpoint).returncode == 0
    )
    for shell in ("bash", "zsh", "fish"):
        script = clusterctl("completion", shell)
        assert script.returncode == 0 and "_CLUSTERCTL_COMPLETE" in script.stdout, script.stderr

    def complete(*words: str) -> list[str]:
        env = env_for(node) | {"_CLUSTERCTL_COMPLETE": "bash_complete",
                               "COMP_WORDS": " ".join(["clusterctl", *words]),
                               "COMP_CWORD": str(len(words))}  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "cli.main"], env=env, capture_output=True,
                              text=True, timeout=30)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return [line.split(",", 1)[1] for line in done.stdout.splitlines() if "," in line]

    assert complete("designate", "") == ["n1"]
    assert complete("service", "get", "s") == ["shop"]
    assert sorted(complete("service", "delete", "")) == ["shop", "web"]
    assert complete("datapath", "stats", "n") == ["n1"]
