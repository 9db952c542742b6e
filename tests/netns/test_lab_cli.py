"""`clusterctl lab up | status | demo | down` as a user runs them, and what down leaves."""

from __future__ import annotations

import json
import re
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
        state = json.loads((lab_dir / "lab.json").read_text())
        pids = [p["pid"] for p in (state["etcd"], *state["nodes"], *state["services"])]
        again = clusterctl("lab", "up", env=env)
        assert again.returncode == 1 and "a lab is already up" in again.stderr
        nodes = json.loads(clusterctl("nodes", "list", "-o", "json", env=env).stdout)
        assert [(n["node_id"], n["designation"]["role"]) for n in nodes] == [
            ("n1", "primary"),
            ("n2", "backup"),
            ("n3", "none"),
        ]
        check_demo(clusterctl("lab", "demo", env=env, timeout_s=120))
        status = clusterctl("lab", "status", env=env)
        assert (
            status.returncode == 0 and status.stdout.count("running") == 10
        )  # etcd, 3 x (tcphopd, VIP service, app)
        state = json.loads((lab_dir / "lab.json").read_text())
        pids += [n["pid"] for n in state["nodes"]]
        made = [c for c in state["created"] if not c.startswith("link:")]
    finally:
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


def check_demo(demo: subprocess.CompletedProcess[str]) -> None:
    """What the demo shows, read from its output."""
    assert demo.returncode == 0, demo.stderr
    out = demo.stdout
    rows = [line.split() for line in out.splitlines() if line.startswith(("n1 ", "n2 ", "n3 "))]
    shares = {r[0]: int(r[2]) for r in rows if len(r) > 2 and r[2].isdigit()}
    assert set(shares) == {"n1", "n2", "n3"} and min(shares.values()) > 0, out
    # direct return from a server the scheduler encapsulated to, in another subnet
    served = re.search(r"(?m)^served by (n\d) \(([\d.]+)/24\): (\d+) bytes; the scheduler "
                       r"is n1 \(([\d.]+)/24\)$", out)  # fmt: skip
    assert served is not None, out
    assert served.group(1) == "n3" and served.group(2) != served.group(4)
    counters = re.search(r"encapsulated (\d+), response packets \(vip_reply\) (\d+)", out)
    assert counters is not None and int(counters.group(1)) > 100, out  # the ACKs
    assert counters.group(2) == "0"
    link = re.search(r"link during the download: ([\d.]+) MB against (\d+) MB", out)
    assert link is not None and float(link.group(1)) < 0.1 * int(link.group(2)), out
    assert re.search(r"(?m)^GET / with X-Tenant: blue +-> n3$", out), out  # the L7 rule
    assert int(re.search(r"handed off with TCP_REPAIR: (\d+)", out).group(1)) > 0  # type: ignore[union-attr]
    assert "n2 leads after" in out  # planned handover
    assert "n1 leads after" in out  # the killed leader's backup took over
    assert out.count("(intact)") == 2, out  # downloads across the handover and the kill
    assert "node_joined" in out
