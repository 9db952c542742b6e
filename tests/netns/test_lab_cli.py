"""`clusterctl lab up | status | demo | down` as a user runs them, and what down leaves."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.netns import netns_available
from tests.conftest import clusterctl, load_bpf, need

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.e2e]


def test_lab_up_status_demo_down(tmp_path: Path) -> None:
    ok, why = netns_available()
    need("netns", ok, why)
    load_bpf().close()
    lab_dir = tmp_path / "lab"
    env = {"TCPHOP_LAB_DIR": str(lab_dir)}
    up = clusterctl("lab", "up", "--nodes", "3", env=env)
    try:
        assert up.returncode == 0, up.stderr
        steps = [line.split("] ", 1)[1] for line in up.stderr.splitlines() if "] " in line]
        assert steps[0].startswith("namespaces and links") and steps[1].startswith("etcd up at")
        assert steps[2:5] == [s for s in steps if s.startswith(("n1 ", "n2 ", "n3 "))], steps
        assert steps[-2:] == ["3 of 3 nodes registered: n1, n2, n3", "leader elected: n1"]
        assert re.match(r"lab up in \S+ in \d+\.\d s: ", up.stdout), up.stdout
        state = json.loads((lab_dir / "lab.json").read_text())
        assert [n["http"] for n in state["nodes"]] == [
            n["endpoint"].replace(":7700", ":7702") for n in state["nodes"]
        ]
        pids = [p["pid"] for p in (state["etcd"], *state["nodes"], *state["services"])]
        again = clusterctl("lab", "up", env=env)
        assert again.returncode == 1 and "a lab is already up" in again.stderr
        nodes = json.loads(clusterctl("nodes", "list", "-o", "json", env=env).stdout)
        assert [(n["node_id"], n["designation"]["role"]) for n in nodes] == [
            ("n1", "primary"),
            ("n2", "backup"),
            ("n3", "none"),
        ]
        check_demo(clusterctl("lab", "demo", env=env, timeout_s=120), lab_dir)
        status = clusterctl("lab", "status", env=env)
        assert (
            status.returncode == 0 and status.stdout.count("running") == 10
        )  # etcd, 3 x (tcphopd, VIP service, app)
        state = json.loads((lab_dir / "lab.json").read_text())
        pids += [n["pid"] for n in state["nodes"]]
        made = [c for c in state["created"] if not c.startswith("link:")]
    finally:
        if (lab_dir / "logs").is_dir():  # kept with the test's tmp_path (pytest keeps the last 3)
            shutil.copytree(lab_dir / "logs", tmp_path / "lab-logs")
        down = clusterctl("lab", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert not lab_dir.exists()
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        )
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(ns in listed.split() for ns in made)
    assert (
        state["prefix"] not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    )
    assert clusterctl("lab", "down", env=env).stdout.startswith("no lab in")


def check_demo(demo: subprocess.CompletedProcess[str], lab_dir: Path) -> None:
    """What the demo measured, read from the data it writes (demo.json), not from its prose."""
    assert demo.returncode == 0, demo.stderr
    facts = json.loads((lab_dir / "demo.json").read_text())
    assert set(facts["shares"]) == {"n1", "n2", "n3"} and min(facts["shares"].values()) > 0
    # direct return from a server the scheduler encapsulated to, in another subnet
    d = facts["direct_return"]
    assert (d["server"], d["scheduler"]) == ("n3", "n1")
    assert d["server_subnet"] != d["scheduler_subnet"]
    assert d["bytes"] == 50 * 2**20 and d["encapsulated"] > 100  # the client's ACKs
    assert d["vip_reply"] == 0 and d["router_to_scheduler_bytes"] < 0.1 * d["bytes"]
    l7 = facts["l7"]
    assert l7["routed"]["GET / with X-Tenant: blue"] == ["n3"]  # the L7 rule
    assert set(l7["routed"]["GET /static/app.js"]) <= {"n1", "n2"}
    assert l7["handed_off"] > 0
    assert facts["handover"]["to"] == "n2" and facts["handover"]["download"]["intact"]
    assert facts["kill"]["killed"] == "n2" and facts["kill"]["new_leader"] == "n1"
    assert facts["kill"]["download"]["intact"]
    assert "node_joined" in demo.stdout  # the event stream is printed
