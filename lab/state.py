"""What a running lab is, as recorded in `<dir>/lab.json`: its processes, namespaces and links.

Light on purpose: `clusterctl` reads it to find a running lab's endpoints without loading the
lab's machinery (namespaces, the embedded etcd, libbpf).
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cluster.tls import TlsFiles

if TYPE_CHECKING:
    from lab.netns import RoutedLab

STATE_FILE = "lab.json"
DEMO_FILE = "demo.json"
PKI_DIR = "pki"  # the lab's CA and certificates  # what `lab demo` measured, as data
STOP_TIMEOUT_S = 5.0
EXEC_READS = 50  # reads of a process's command line, 1 ms apart, while an exec empties it


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
    http: str = ""  # a node's metrics and health listener (HTTPS with the lab's PKI)

    @classmethod
    def spawn(cls, name: str, cmd: list[str], log: Path, marker: str, endpoint: str) -> LabProcess:
        """Start a detached process (its own session, output appended to `log`): it outlives
        the command, and nothing waits for it (`stop` ends it by PID)."""
        pid = os.posix_spawnp(
            cmd[0],
            cmd,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
        return cls(name, pid, marker, endpoint)

    def running(self) -> bool:
        """Alive, and still ours. A process in the middle of an exec (`ip netns exec` starting
        etcd, about 0.1 ms after the spawn) shows an empty command line for a moment: read it
        again rather than call it gone (a start that polled in that moment failed as "etcd
        exited" about once in ten full test runs)."""
        for _ in range(EXEC_READS):
            try:
                cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes()
                state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
            except OSError:
                return False
            if cmdline or state == "Z":
                return self.marker.encode() in cmdline and state != "Z"
            time.sleep(0.001)
        return False  # still no command line: a kernel thread took the PID

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
    prefix: str
    net: str
    size: int
    xdp_mode: str = "native"
    etcd: LabProcess | None = None  # the first etcd member
    nodes: list[LabProcess] = field(default_factory=list)
    services: list[LabProcess] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # namespaces and links, in order
    mounts: list[str] = field(default_factory=list)
    created_at_unix_s: float = field(default_factory=time.time)
    etcd_peers: list[LabProcess] = field(default_factory=list)  # the other etcd members

    @property
    def lab(self) -> RoutedLab:
        from lab.netns import RoutedLab  # the machinery, only when a command needs it

        return RoutedLab(self.size, self.prefix, self.net, self.created)

    @property
    def vip(self) -> str:
        return self.lab.vip()

    def admin_tls(self) -> TlsFiles | None:
        """The lab's admin client certificate (a lab made before TLS has none)."""
        return self.tls("admin")

    def tls(self, name: str) -> TlsFiles | None:
        pki = Path(self.directory) / PKI_DIR
        if not (pki / f"{name}.crt").exists():
            return None
        return TlsFiles(pki / "ca.crt", pki / f"{name}.crt", pki / f"{name}.key")

    @property
    def etcd_url(self) -> str:
        """The etcd endpoints nodes and tools use (comma-separated)."""
        return ",".join(m.endpoint for m in self.etcd_members)

    @property
    def etcd_members(self) -> list[LabProcess]:
        return [self.etcd, *self.etcd_peers] if self.etcd else []

    @property
    def endpoints(self) -> list[str]:
        return [n.endpoint for n in self.nodes]

    @property
    def processes(self) -> list[LabProcess]:
        return [*self.nodes, *self.services, *self.etcd_members]

    def save(self) -> None:
        Path(self.directory, STATE_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> LabState | None:
        try:
            doc = json.loads((directory / STATE_FILE).read_text())
            return cls(
                doc["directory"],
                doc["prefix"],
                doc["net"],
                doc["size"],
                doc["xdp_mode"],
                LabProcess(**doc["etcd"]) if doc["etcd"] else None,
                [LabProcess(**n) for n in doc["nodes"]],
                [LabProcess(**n) for n in doc["services"]],
                doc["created"],
                doc["mounts"],
                doc["created_at_unix_s"],
                [LabProcess(**m) for m in doc.get("etcd_peers", [])],
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def lab_admin_tls(directory: Path) -> TlsFiles | None:
    """The running lab's admin client certificate (`<dir>/pki/`), if a lab runs there."""
    pki = directory / PKI_DIR
    if not running_endpoints(directory) or not (pki / "admin.crt").exists():
        return None
    return TlsFiles(pki / "ca.crt", pki / "admin.crt", pki / "admin.key")


def running_endpoints(directory: Path) -> list[str]:
    state = LabState.load(directory)
    return [n.endpoint for n in state.nodes if n.running()] if state else []
