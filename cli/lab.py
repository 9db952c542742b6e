"""The lab: a whole tcphop cluster on one machine.

`up` starts an embedded etcd and N tcphopd processes on loopback, each in a session of its own
so they outlive the command, and records exactly what it started in `<dir>/lab.json`. `down`
stops those processes (checking each PID still runs the command the lab started, so a reused
PID is never killed) and removes what `up` created in the directory, nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cluster.store.embedded import EmbeddedEtcd, free_port

STATE_FILE = "lab.json"
STOP_TIMEOUT_S = 5.0


def default_dir() -> Path:
    env = os.environ.get("TCPHOP_LAB_DIR")
    if env:
        return Path(env)
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "tcphop" / "lab"


@dataclass
class LabProcess:
    name: str
    pid: int
    marker: str  # a string in /proc/<pid>/cmdline that proves the PID is still ours
    endpoint: str

    def running(self) -> bool:
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        except OSError:
            return False
        state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        return self.marker.encode() in cmdline and state != "Z"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S; only while the PID is still ours."""
        if not self.running():
            return
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.running():
            os.kill(self.pid, signal.SIGKILL)


@dataclass
class LabState:
    directory: str
    etcd: LabProcess
    nodes: list[LabProcess]
    created_at_unix_s: float

    @property
    def endpoints(self) -> list[str]:
        return [n.endpoint for n in self.nodes]

    def save(self) -> None:
        Path(self.directory, STATE_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> LabState | None:
        try:
            doc = json.loads((directory / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return cls(
            doc["directory"],
            LabProcess(**doc["etcd"]),
            [LabProcess(**n) for n in doc["nodes"]],
            doc["created_at_unix_s"],
        )


def running_endpoints(directory: Path) -> list[str]:
    state = LabState.load(directory)
    return [n.endpoint for n in state.nodes if n.running()] if state else []


def node_command(
    node_id: str,
    etcd_url: str,
    listen: str,
    *,
    lease_ttl_s: int = 2,
    leader_ttl_s: int = 1,
    uplink: str | None = None,
    key_root: str | None = None,
    check_host: str | None = None,
) -> list[str]:
    """The tcphopd command line the lab, the tests and the benchmarks start nodes with.

    Nodes of a lab share one machine, so each reports its own process group's CPU.
    """
    optional = {"--uplink": uplink, "--etcd-prefix": key_root, "--check-host": check_host}
    return [
        sys.executable,
        "-m",
        "cluster",
        "--node-id",
        node_id,
        "--etcd",
        etcd_url,
        "--listen",
        listen,
        "--lease-ttl",
        str(lease_ttl_s),
        "--leader-ttl",
        str(leader_ttl_s),
        "--cpu-scope",
        "process-group",
        *(part for flag, value in optional.items() if value for part in (flag, value)),
        "--log-json",
    ]


def start_node(directory: Path, node_id: str, etcd_url: str, lease_ttl_s: int = 2) -> LabProcess:
    endpoint = f"127.0.0.1:{free_port()}"
    logs = directory / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{node_id}.log").open("ab") as log:
        proc = subprocess.Popen(
            node_command(node_id, etcd_url, endpoint, lease_ttl_s=lease_ttl_s),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return LabProcess(node_id, proc.pid, f"--listen\0{endpoint}", endpoint)


class LabError(Exception):
    pass


def up(directory: Path, nodes: int) -> LabState:
    """Start etcd and `nodes` tcphopd processes; raise LabError if a lab already runs there."""
    if not 1 <= nodes <= 32:
        raise LabError(f"--nodes: {nodes} is not in 1..32")
    existing = LabState.load(directory)
    if existing and any(p.running() for p in [existing.etcd, *existing.nodes]):
        raise LabError(f"a lab is already up in {directory}; run `clusterctl lab down` first")
    directory.mkdir(parents=True, exist_ok=True)
    etcd = EmbeddedEtcd(directory / "etcd")
    etcd.start(detach=True)
    assert etcd.process is not None
    state = LabState(
        str(directory),
        LabProcess("etcd", etcd.process.pid, str(directory / "etcd" / "data"), etcd.url),
        [],
        time.time(),
    )
    state.save()
    for i in range(1, nodes + 1):
        state.nodes.append(start_node(directory, f"n{i}", etcd.url))
        state.save()
    return state


def down(directory: Path) -> LabState | None:
    """Stop what `up` started in directory and remove its files; None if no lab is there."""
    state = LabState.load(directory)
    if state is None:
        return None
    for proc in [*state.nodes, state.etcd]:  # nodes first: they revoke their leases in etcd
        proc.stop()
    for created in ("etcd", "logs"):
        shutil.rmtree(directory / created, ignore_errors=True)
    (directory / STATE_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: something else lives there; leave it
        directory.rmdir()
    return state
