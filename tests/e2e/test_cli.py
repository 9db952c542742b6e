"""clusterctl as a user runs it: real processes, exit codes 0/1/2, output formats, the lab."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from cluster.store.embedded import free_port
from tests.conftest import Daemon, clusterctl

pytestmark = [pytest.mark.etcd, pytest.mark.e2e]
StartDaemon = Callable[..., Daemon]
SAMPLES = Path(__file__).resolve().parents[2] / "cli" / "samples" / "services.yaml"


@pytest.fixture
def node(start_daemon: StartDaemon) -> Daemon:
    return start_daemon("n1")


def test_read_commands_render_table_json_and_yaml(node: Daemon) -> None:
    table = clusterctl("nodes", "list", endpoint=node.endpoint)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:4] == ["NODE", "ALIVE", "ENDPOINT", "ROLE"]
    assert "n1" in table.stdout
    as_json = json.loads(clusterctl("nodes", "list", "-o", "json", endpoint=node.endpoint).stdout)
    assert as_json[0]["node_id"] == "n1" and as_json[0]["registration"]["endpoint"]
    as_yaml = yaml.safe_load(clusterctl("status", "-o", "yaml", endpoint=node.endpoint).stdout)
    assert as_yaml["answered_by"] == "n1"


def test_service_apply_get_list_delete(node: Daemon, tmp_path: Path) -> None:
    applied = clusterctl("service", "apply", "-f", str(SAMPLES), endpoint=node.endpoint)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == ["service/web created", "service/shop created"]
    assert "pool names node 'n2', which has never registered" in applied.stderr
    again = clusterctl("service", "apply", "-f", str(SAMPLES), endpoint=node.endpoint)
    assert again.stdout.splitlines() == ["service/web unchanged", "service/shop unchanged"]
    got = clusterctl("service", "get", "shop", "-o", "yaml", endpoint=node.endpoint)
    exported = tmp_path / "shop.yaml"
    exported.write_text(got.stdout)
    reapplied = clusterctl("service", "apply", "-f", str(exported), endpoint=node.endpoint)
    assert reapplied.stdout.strip() == "service/shop unchanged"  # get -o yaml round-trips
    listed = json.loads(clusterctl("service", "list", "-o", "json", endpoint=node.endpoint).stdout)
    assert sorted(s["name"] for s in listed) == ["shop", "web"]
    deleted = clusterctl("service", "delete", "web", endpoint=node.endpoint)
    assert deleted.returncode == 0 and deleted.stdout.strip() == "service/web deleted"


def test_invalid_spec_file_exits_1_with_field_paths_and_stores_nothing(
    node: Daemon, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "services:\n  - {name: ok, vip: 10.0.0.1, port: 80}\n"
        "  - {name: web, vip: 10.0.0.1, port: 70000}\n"
    )
    result = clusterctl("service", "apply", "-f", str(bad), endpoint=node.endpoint)
    assert result.returncode == 1
    assert "services[1].web.port: 70000 is not in 1..65535" not in result.stderr
    assert "port: 70000 is not in 1..65535" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    listed = clusterctl("service", "list", "-o", "json", endpoint=node.endpoint)
    assert json.loads(listed.stdout) == []  # the valid one was not stored either
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("{unclosed: [")
    result = clusterctl("service", "apply", "-f", str(garbage), endpoint=node.endpoint)
    assert result.returncode == 1 and "not valid YAML or JSON" in result.stderr
    missing = clusterctl(
        "service", "apply", "-f", str(tmp_path / "none.yaml"), endpoint=node.endpoint
    )
    assert missing.returncode == 1 and "cannot read" in missing.stderr


def test_refusals_exit_1_and_usage_errors_2_with_one_line(node: Daemon) -> None:
    for args, message, code in [
        (("designate", "ghost", "--role", "primary"), "node 'ghost' is unknown", 1),
        (("designate", "n1", "--role", "leader"), "Invalid value for '--role'", 2),
        (("server", "drain", "ghost"), "node 'ghost' is unknown", 1),
        (("server", "enable", "n1", "--weight", "-5"), "weight: -5 is not in 0..10000", 1),
        (("service", "get", "nope"), "service 'nope' does not exist", 1),
        (("nodes", "frobnicate"), "No such command 'frobnicate'", 2),
    ]:
        result = clusterctl(*args, endpoint=node.endpoint)
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_designate_and_serving_commands(node: Daemon) -> None:
    forced = clusterctl("designate", "n7", "--role", "backup", "--force", endpoint=node.endpoint)
    assert forced.returncode == 0 and "warning: node 'n7' has never registered" in forced.stderr
    ok = clusterctl("designate", "n1", "--role", "primary", endpoint=node.endpoint)
    assert ok.returncode == 0 and ok.stdout.strip() == "n1: role primary"
    drained = clusterctl("server", "drain", "n1", "--weight", "50", endpoint=node.endpoint)
    assert drained.stdout.strip() == "n1: serving draining, weight 50"
    nodes = json.loads(clusterctl("nodes", "list", "-o", "json", endpoint=node.endpoint).stdout)
    assert [
        (n["node_id"], n["designation"]["role"], n["designation"]["serving"]) for n in nodes
    ] == [("n1", "primary", "draining"), ("n7", "backup", "enabled")]


def test_events_prints_changes_in_order(node: Daemon) -> None:
    status = json.loads(clusterctl("status", "-o", "json", endpoint=node.endpoint).stdout)
    clusterctl("designate", "n1", "--role", "backup", endpoint=node.endpoint)
    clusterctl("server", "disable", "n1", endpoint=node.endpoint)
    out = clusterctl(
        "events",
        "--from-revision",
        str(status["revision"] + 1),
        "--count",
        "3",
        "-o",
        "json",
        endpoint=node.endpoint,
    )
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    # designated backup and alone, n1 also gets elected: one leader_elected among them
    assert [e["subject"] for e in events if e["type"] == "leader_elected"] == ["n1"]
    events = [e for e in events if e["type"] == "designation_changed"]
    assert [(e["type"], e["designation"]["role"], e["designation"]["serving"]) for e in events] == [
        ("designation_changed", "backup", "enabled"),
        ("designation_changed", "backup", "disabled"),
    ]


def test_exit_codes_tell_usage_from_refusal_from_unreachable() -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    for usage in (("service", "apply"), ("designate", "n1"), ("nodes", "list", "--bogus")):
        result = clusterctl(*usage, endpoint=nowhere)
        assert result.returncode == 2, (usage, result.stderr)  # before any call is made
        assert result.stderr.startswith("Error: "), result.stderr
    result = clusterctl("--timeout", "1", "nodes", "list", endpoint=nowhere)
    assert result.returncode == 3
    assert result.stderr.startswith("Error: cannot reach the cluster")
    assert "Traceback" not in result.stderr
    debug = clusterctl("--debug", "--timeout", "1", "status", endpoint=nowhere)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
