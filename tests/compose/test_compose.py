"""The docker-compose demo end to end, with real containers: the images built offline, the
project up and healthy, the demo's checks, an etcd member killed under traffic, and `down`
leaving nothing behind. A project name and subnets of its own (never the user's demo)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import need, wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def run(*cmd: str, env: dict[str, str], timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), cwd=ROOT, env=os.environ | env, capture_output=True,
                          text=True, timeout=timeout_s, check=False)  # fmt: skip


def ok(*cmd: str, env: dict[str, str], timeout_s: float = 300) -> str:
    done = run(*cmd, env=env, timeout_s=timeout_s)
    assert done.returncode == 0, f"{' '.join(cmd)}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def free_net() -> str:
    """A 10.N prefix (N in 232..249) no route and no docker network of this machine uses."""
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True,
                            text=True, check=True).stdout  # fmt: skip
    ids = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    nets = subprocess.run(["docker", "network", "inspect", *ids], capture_output=True, text=True,
                          check=True).stdout if ids else ""  # fmt: skip
    for n in range(232, 250):
        if f"10.{n}." not in routes and f'"10.{n}.' not in nets:
            return f"10.{n}"
    raise RuntimeError("no free 10.232-249 prefix for the compose test")


def docker_ready() -> tuple[bool, str]:
    if shutil.which("docker") is None:
        return False, "no docker CLI (deploy/image/engine.sh installs and starts one)"
    for cmd in (["docker", "info"], ["docker", "compose", "version"]):
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return False, f"{' '.join(cmd)}: {done.stderr.strip()[-300:]}"
    return True, ""


def project_env() -> dict[str, str]:
    run_id = uuid.uuid4().hex[:6]
    return {"TCPHOP_COMPOSE_PROJECT": f"tcphop-t{run_id}", "TCPHOP_IMAGE_TAG": f"t{run_id}",
            "TCPHOP_COMPOSE_NET": free_net(), "PYTHON": sys.executable,
            "COMPOSE_BAKE": "false"}  # fmt: skip


def left_behind(project: str) -> list[str]:
    label = f"label=com.docker.compose.project={project}"
    found = []
    for kind in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
        out = subprocess.run(["docker", *kind, "-q", "--filter", label], capture_output=True,
                             text=True, check=True).stdout.split()  # fmt: skip
        found += [f"{kind[0]} {x}" for x in out]
    return found


def check_healthy(env: dict[str, str]) -> None:
    listed = ok("docker", "compose", "ps", "-a", "--format", "json", env=env)
    rows = [json.loads(line) for line in listed.splitlines()]
    states = {r["Service"]: (r["State"], r.get("Health", ""), r.get("ExitCode")) for r in rows}
    assert states.pop("pki") == ("exited", "", 0)
    assert set(states) == {"e1", "e2", "e3", "router", "n1", "n2", "n3", "n4", "client"}
    assert all(s[:2] == ("running", "healthy") for s in states.values()), states


def check_demo(env: dict[str, str]) -> None:
    out = ok("deploy/compose/demo.sh", env=env)
    table = out.split("each on a new connection:")[1].splitlines()[2:6]
    shares = {row.split()[0]: int(row.split()[2]) for row in table}
    assert set(shares) == {"n1", "n2", "n3", "n4"}, out
    assert all(n > 0 for n in shares.values()), out  # both subnets served
    assert "replies through the scheduler (vip_reply) +0" in out
    assert out.count("(intact)") == 2, out  # the planned handover's and the leader kill's
    routed = [line.rsplit("-> ", 1) for line in out.splitlines() if line.startswith("GET ")]
    assert {node for label, node in routed if "static" in label} <= {"n1", "n2"}, out
    assert {node for label, node in routed if "blue" in label} == {"n3"}, out
    assert len({node for label, node in routed if "session" in label}) == 1, out
    moved = re.search(r"TCP_REPAIR: (\d+), served by the scheduler itself: (\d+)", out)
    assert moved is not None, out
    assert int(moved[1]) + int(moved[2]) == len(routed) == 11, out


def test_the_compose_demo_end_to_end(tmp_path: Path) -> None:
    need("docker", *docker_ready())
    env = project_env()
    ok("docker", "compose", "config", "-q", env=env)
    ok("deploy/image/base.sh", env=env, timeout_s=600)
    ok("deploy/image/wheels.sh", env=env)
    ok("docker", "compose", "build", "-q", env=env, timeout_s=600)
    try:
        ok("docker", "compose", "up", "-d", "--wait", env=env)
        check_healthy(env)
        check_demo(env)
        check_etcd_member_kill(env)
    finally:  # every container's log beside the test's temporary directory, for a failure
        logs = run("docker", "compose", "logs", "--no-color", "--timestamps", env=env)
        (tmp_path / "compose.log").write_text(logs.stdout + logs.stderr)
        run("docker", "compose", "down", "--volumes", "--remove-orphans", "--rmi", "all", env=env)
    assert left_behind(env["TCPHOP_COMPOSE_PROJECT"]) == []
    images = ok(
        "docker", "images", "-q", "--filter", f"reference=*:{env['TCPHOP_IMAGE_TAG']}", env=env
    )
    assert images.split() == []


def etcd_leader(env: dict[str, str]) -> str:
    net = env["TCPHOP_COMPOSE_NET"]
    endpoints = ",".join(f"https://{net}.5.{21 + k}:2379" for k in range(3))
    out = ok("docker", "compose", "exec", "-T", "e1", "etcdctl", "--endpoints", endpoints,
             "endpoint", "status", "-w", "json", env=env)  # fmt: skip
    for k, member in enumerate(json.loads(out)):
        if member["Status"]["header"]["member_id"] == member["Status"]["leader"]:
            return f"e{k + 1}"
    raise AssertionError(f"no etcd leader: {out}")


def check_etcd_member_kill(env: dict[str, str]) -> None:
    """Kill the etcd leader's container during a download and a stream of new connections:
    nothing is lost, the same node leads. (Not always in the same term: a member whose
    container vanishes answers nothing, so the leader's next lease refresh waits out a
    timeout and now and then it steps down and wins again, seen once in seven runs; once, in
    a full run, three times in 4 s while the two members left took that long to answer, and the
    check fell between two of its terms: so it waits for a leader.)"""

    def status() -> tuple[str, int]:
        found: list[tuple[str, int]] = []

        def led() -> bool:
            st = json.loads(ok("docker", "compose", "exec", "-T", "client", "clusterctl",
                               "status", "-o", "json", env=env))  # fmt: skip
            if st["leader"]:
                found.append((st["leader"]["node_id"], st["leader"]["term"]))
            return bool(found)

        wait_for(led, 15, "a leader")
        return found[0]

    before, victim = status(), etcd_leader(env)
    step = ["docker", "compose", "exec", "-T", "client", "python3", "/compose/demo.py"]
    cmd = [*step, "download", "48", "12", before[0]]
    pipes = {"cwd": ROOT, "env": os.environ | env, "stdout": subprocess.PIPE,
             "stderr": subprocess.PIPE, "text": True}  # fmt: skip
    download = subprocess.Popen(cmd, **pipes)
    stream = subprocess.Popen([*step, "shares", "150"], **pipes)
    ok("docker", "compose", "kill", victim, env=env)
    out, err = download.communicate(timeout=120)
    assert download.returncode == 0, err
    assert json.loads(out)["intact"], out
    out, err = stream.communicate(timeout=120)
    assert stream.returncode == 0, out + err  # every new connection was served
    assert status()[0] == before[0]
    ok("docker", "compose", "start", victim, env=env)
    ok("docker", "compose", "up", "-d", "--wait", victim, env=env)
