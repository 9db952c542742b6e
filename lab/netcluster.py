"""A tcphop cluster on a flat LAN of namespaces (`NetLab`): etcd in the LAN namespace, a tcphopd
(with --uplink eth0) and an echo server per node. The election and VIP tests and the failover
benchmark use it; the routed lab with the XDP datapath is lab/lifecycle.py.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cluster.pki import certificate
from cluster.store.embedded import EmbeddedEtcd
from cluster.tls import Access, TlsFiles
from datapath.arp import who_has
from lab.netns import NetLab, ip, node_command

ECHO_PORT = 8080
ECHO = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {ECHO_PORT})); s.listen(64)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(sys.argv[1].encode()); c.close()\n"
)


@dataclass
class NetCluster:
    """etcd in the LAN namespace, a tcphopd (with --uplink eth0) and an echo server per node."""

    lab: NetLab
    etcd: EmbeddedEtcd
    logs: Path
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    macs: dict[bytes, str] = field(default_factory=dict)  # eth0 MAC -> node
    root_mac: bytes = b""

    def tls(self, name: str) -> TlsFiles:
        """A certificate of this cluster's CA: n1, n2, ... (nodes) or admin."""
        node = name != "admin"
        access = Access.NODE if node else Access.ADMIN
        return certificate(self.logs / "pki", name, access, name if node else "")

    @property
    def admin_tls(self) -> TlsFiles:
        return self.tls("admin")

    @property
    def endpoints(self) -> list[str]:
        return [f"{self.lab.node_ip(i)}:7700" for i in range(1, self.lab.nodes + 1)]

    def start(self, i: int) -> subprocess.Popen[bytes]:
        node = f"n{i}"
        log = (self.logs / f"{node}.log").open("ab")
        proc = subprocess.Popen(
            self.lab.exec(
                self.lab.node_ns(i),
                *node_command(
                    node,
                    self.etcd.url,
                    f"{self.lab.node_ip(i)}:7700",
                    uplink="eth0",
                    tls=self.tls(node),
                ),
            ),
            stdout=log,
            stderr=log,
        )
        log.close()
        self.daemons[node] = proc
        deadline = time.monotonic() + 15
        while "daemon_started" not in self.log(node) and proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node} did not start within 15 s: {self.log(node)}")
            time.sleep(0.02)
        if proc.poll() is not None:
            raise RuntimeError(f"{node} exited: {self.log(node)}")
        return proc

    def log(self, node: str) -> str:
        return (self.logs / f"{node}.log").read_text(errors="replace")

    def holders(self, vip: str, timeout_s: float = 0.15) -> set[str]:
        """Nodes that answer ARP for the VIP right now, by their eth0 MAC."""
        if not self.macs:
            self.macs = {self.lab.mac(i): f"n{i}" for i in range(1, self.lab.nodes + 1)}
            self.root_mac = bytes.fromhex(
                ip("-br", "link", "show", self.lab.root_if).split()[2].replace(":", "")
            )
        answers = who_has(self.lab.root_if, self.root_mac, vip, timeout_s)
        return {self.macs.get(m, m.hex()) for m in answers}

    def served_by(self, vip: str) -> str | None:
        """Which node's stack accepted a TCP connection to VIP:ECHO_PORT."""
        try:
            with socket.create_connection((vip, ECHO_PORT), timeout=0.5) as s:
                return s.recv(64).decode()
        except OSError:
            return None

    def vip_addresses(self, i: int) -> str:
        return ip("-br", "-4", "addr", netns=self.lab.node_ns(i))

    @classmethod
    def up(cls, lab: NetLab, workdir: Path) -> NetCluster:
        lab.create()
        etcd = EmbeddedEtcd(
            workdir / "etcd", host=lab.hub_ip, client_port=2379, peer_port=2380, netns=lab.lan
        )
        c = cls(lab, etcd, workdir)
        try:
            etcd.start()
            for i in range(1, lab.nodes + 1):
                c.helpers.append(
                    subprocess.Popen(lab.exec(lab.node_ns(i), sys.executable, "-c", ECHO, f"n{i}"))
                )
        except BaseException:
            c.down()
            raise
        return c

    def down(self) -> None:
        for proc in [*self.daemons.values(), *self.helpers]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()
        self.etcd.stop()
        self.lab.destroy()
