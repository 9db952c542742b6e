"""A LAN of network namespaces on one machine, for tests and benchmarks.

    root ns --veth-- [ <p>l: bridge br0, 10.A.B.1/24, etcd ] --veth-- <p>n1 (eth0 10.A.B.11)
                                                           --veth-- <p>n2 (eth0 10.A.B.12) ...

Every name starts with a per-run prefix (`th` + PID digits + a counter) and every namespace and
interface is deleted by name by the run that made it. The root side (10.A.B.254) lets the
test process reach the nodes' APIs and the VIPs; all traffic stays inside these namespaces.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cli.lab import node_command
from cluster.store.embedded import EmbeddedEtcd
from datapath.arp import who_has

_counter = itertools.count()


def ip(*args: str, netns: str | None = None) -> str:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {done.stderr.strip()}")
    return done.stdout


def netns_available() -> tuple[bool, str]:
    """Whether this process may create network namespaces (root, iproute2, kernel support)."""
    if os.geteuid() != 0:
        return False, "not root"
    probe = f"thp{os.getpid() % 100000}"
    try:
        ip("netns", "add", probe)
    except (RuntimeError, FileNotFoundError) as e:
        return False, str(e)
    ip("netns", "del", probe)
    return True, ""


@dataclass
class NetLab:
    """The LAN; `create()` builds it, `destroy()` removes exactly what it built."""

    nodes: int
    prefix: str = field(default_factory=lambda: f"th{os.getpid() % 10000}{next(_counter)}")
    created: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = os.getpid() % 4000 + next(_counter)
        self.net = f"10.{200 + n // 250 % 50}.{n % 250}"

    @property
    def lan(self) -> str:
        return f"{self.prefix}l"

    def node_ns(self, i: int) -> str:
        return f"{self.prefix}n{i}"

    def node_ip(self, i: int) -> str:
        return f"{self.net}.{10 + i}"

    @property
    def hub_ip(self) -> str:
        return f"{self.net}.1"

    @property
    def root_if(self) -> str:
        return f"{self.prefix}h"

    def vip(self, n: int = 100) -> str:
        return f"{self.net}.{n}"

    def create(self) -> NetLab:
        try:
            self._create()
        except BaseException:
            self.destroy()
            raise
        return self

    def _create(self) -> None:
        ip("netns", "add", self.lan)
        self.created.append(self.lan)
        ip("link", "set", "lo", "up", netns=self.lan)
        ip("link", "add", "br0", "type", "bridge", netns=self.lan)
        ip("addr", "add", f"{self.hub_ip}/24", "dev", "br0", netns=self.lan)
        ip("link", "set", "br0", "up", netns=self.lan)
        self._plug(self.root_if, None)
        ip("addr", "add", f"{self.net}.254/24", "dev", self.root_if)
        for i in range(1, self.nodes + 1):
            ns = self.node_ns(i)
            ip("netns", "add", ns)
            self.created.append(ns)
            ip("link", "set", "lo", "up", netns=ns)
            self._plug(f"{self.prefix}v{i}", ns)
            ip("addr", "add", f"{self.node_ip(i)}/24", "dev", "eth0", netns=ns)

    def _plug(self, name: str, ns: str | None) -> None:
        """A veth from ns (None: the root namespace) into the LAN bridge; eth0 inside ns."""
        peer = f"{name}p"
        ip("link", "add", name, "type", "veth", "peer", "name", peer)
        if ns is None:
            self.created.append(f"link:{name}")
        else:
            ip("link", "set", name, "netns", ns)
            ip("link", "set", name, "name", "eth0", netns=ns)
        ip("link", "set", peer, "netns", self.lan)
        ip("link", "set", peer, "master", "br0", "up", netns=self.lan)
        ip("link", "set", "eth0" if ns else name, "up", netns=ns)

    def exec(self, ns: str, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def mac(self, i: int) -> bytes:
        out = ip("-br", "link", "show", "eth0", netns=self.node_ns(i)).split()
        return bytes.fromhex(out[2].replace(":", ""))

    def destroy(self) -> None:
        for name in reversed(self.created):
            try:
                if name.startswith("link:"):
                    ip("link", "del", name.removeprefix("link:"))
                else:
                    ip("netns", "del", name)
            except RuntimeError:
                pass  # already gone
        self.created.clear()


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

    @property
    def endpoints(self) -> list[str]:
        return [f"{self.lab.node_ip(i)}:7700" for i in range(1, self.lab.nodes + 1)]

    def start(self, i: int) -> subprocess.Popen[bytes]:
        node = f"n{i}"
        log = (self.logs / f"{node}.log").open("ab")
        proc = subprocess.Popen(
            self.lab.exec(
                self.lab.node_ns(i),
                *node_command(node, self.etcd.url, f"{self.lab.node_ip(i)}:7700", uplink="eth0"),
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


@dataclass
class RoutedLab:
    """Client, router, one scheduler and servers, each subnet behind the router:

        client 10.A.1.2 -- router -- scheduler 10.A.2.2
                                  -- server i 10.A.(10+i).2   (i = 1..servers)

    The VIP (10.A.100.10) is routed by the router to the scheduler. Servers answer clients
    directly through the router (rp_filter off there), never through the scheduler.
    """

    servers: int
    prefix: str = field(default_factory=lambda: f"th{os.getpid() % 10000}r{next(_counter)}")
    created: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = os.getpid() % 4000 + next(_counter)
        self.net = f"10.{150 + n % 50}"

    def ns(self, role: str) -> str:
        return f"{self.prefix}{role}"

    @property
    def vip(self) -> str:
        return f"{self.net}.100.10"

    @property
    def client_ip(self) -> str:
        return f"{self.net}.1.2"

    @property
    def scheduler_ip(self) -> str:
        return f"{self.net}.2.2"

    def server_ip(self, i: int) -> str:
        return f"{self.net}.{10 + i}.2"

    def router_mac(self, toward: str) -> bytes:
        out = ip("-br", "link", "show", toward, netns=self.ns("r")).split()
        return bytes.fromhex(out[2].replace(":", ""))

    def create(self) -> RoutedLab:
        try:
            self._create()
        except BaseException:
            self.destroy()
            raise
        return self

    def _create(self) -> None:
        r = self.ns("r")
        ip("netns", "add", r)
        self.created.append(r)
        ip("link", "set", "lo", "up", netns=r)
        for path in (
            "net/ipv4/ip_forward",
            "net/ipv4/conf/all/rp_filter",
            "net/ipv4/conf/default/rp_filter",
        ):
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    r,
                    "sysctl",
                    "-qw",
                    f"{path.replace('/', '.')}={1 if 'forward' in path else 0}",
                ],
                check=True,
            )
        hosts = [
            ("c", self.client_ip, f"{self.net}.1.1"),
            ("s", self.scheduler_ip, f"{self.net}.2.1"),
        ]
        hosts += [
            (f"v{i}", self.server_ip(i), f"{self.net}.{10 + i}.1")
            for i in range(1, self.servers + 1)
        ]
        for role, addr, gateway in hosts:
            ns = self.ns(role)
            ip("netns", "add", ns)
            self.created.append(ns)
            ip("link", "set", "lo", "up", netns=ns)
            ip(
                "link",
                "add",
                "eth0",
                "netns",
                ns,
                "type",
                "veth",
                "peer",
                "name",
                f"to{role}",
                "netns",
                r,
            )
            ip("addr", "add", f"{addr}/24", "dev", "eth0", netns=ns)
            ip("link", "set", "eth0", "up", netns=ns)
            ip("addr", "add", f"{gateway}/24", "dev", f"to{role}", netns=r)
            ip("link", "set", f"to{role}", "up", netns=r)
            ip("route", "add", "default", "via", gateway, netns=ns)
        ip("route", "add", f"{self.vip}/32", "via", self.scheduler_ip, netns=r)

    def destroy(self) -> None:
        for name in reversed(self.created):
            with contextlib.suppress(RuntimeError):  # already gone
                ip("netns", "del", name)
        self.created.clear()
