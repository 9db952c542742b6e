"""A LAN of network namespaces with etcd and real tcphopd nodes holding VIPs on eth0."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cli.netlab import NetLab, ip, netns_available
from cluster.store.embedded import EmbeddedEtcd
from datapath.arp import who_has
from tests.conftest import need, wait_for

ECHO_PORT = 8080
ECHO = (
    "import socket,sys\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {ECHO_PORT})); s.listen(64)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(sys.argv[1].encode()); c.close()\n"
)


@dataclass
class Cluster:
    lab: NetLab
    etcd: EmbeddedEtcd
    logs: Path
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def endpoints(self) -> list[str]:
        return [f"{self.lab.node_ip(i)}:7700" for i in range(1, self.lab.nodes + 1)]

    def start(self, i: int) -> subprocess.Popen[bytes]:
        node = f"n{i}"
        log = (self.logs / f"{node}.log").open("ab")
        proc = subprocess.Popen(
            self.lab.exec(
                self.lab.node_ns(i),
                sys.executable,
                "-m",
                "cluster",
                "--node-id",
                node,
                "--etcd",
                self.etcd.url,
                "--listen",
                f"{self.lab.node_ip(i)}:7700",
                "--uplink",
                "eth0",
                "--leader-ttl",
                "1",
                "--log-json",
            ),
            stdout=log,
            stderr=log,
        )
        log.close()
        self.daemons[node] = proc
        wait_for(
            lambda: "daemon_started" in self.log(node) or proc.poll() is not None,
            15,
            f"{node} to start",
        )
        assert proc.poll() is None, self.log(node)
        return proc

    def log(self, node: str) -> str:
        return (self.logs / f"{node}.log").read_text(errors="replace")

    def holders(self, vip: str) -> set[str]:
        """Nodes that answer ARP for the VIP right now, by their eth0 MAC."""
        macs = {self.lab.mac(i): f"n{i}" for i in range(1, self.lab.nodes + 1)}
        root_mac = bytes.fromhex(
            ip("-br", "link", "show", self.lab.root_if).split()[2].replace(":", "")
        )
        return {macs.get(m, m.hex()) for m in who_has(self.lab.root_if, root_mac, vip, 0.15)}

    def served_by(self, vip: str) -> str | None:
        """Which node's stack accepted a TCP connection to VIP:ECHO_PORT."""
        try:
            with socket.create_connection((vip, ECHO_PORT), timeout=0.5) as s:
                return s.recv(64).decode()
        except OSError:
            return None

    def vip_addresses(self, i: int) -> str:
        return ip("-br", "-4", "addr", netns=self.lab.node_ns(i))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    ok, why = netns_available()
    need("netns", ok, why)
    lab = NetLab(3).create()
    etcd = EmbeddedEtcd(
        tmp_path / "etcd", host=lab.hub_ip, client_port=2379, peer_port=2380, netns=lab.lan
    )
    c = Cluster(lab, etcd, tmp_path)
    try:
        etcd.start()
        for i in range(1, lab.nodes + 1):
            c.helpers.append(
                subprocess.Popen(lab.exec(lab.node_ns(i), sys.executable, "-c", ECHO, f"n{i}"))
            )
        yield c
    finally:
        for proc in [*c.daemons.values(), *c.helpers]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()
        etcd.stop()
        lab.destroy()
