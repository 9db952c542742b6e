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
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Self

from cluster.tls import TlsFiles
from datapath.libbpf import build

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
    bpf_pin_dir: str | None = None,
    xdp_mode: str = "generic",
    descriptor_dir: str | None = None,
    tls: TlsFiles | None = None,
    etcd_tls: TlsFiles | None = None,
    announce: str | None = None,
    http_listen: str | None = None,
) -> list[str]:
    """The tcphopd command line the lab, the tests and the benchmarks start nodes with.

    Nodes of a lab share one machine, so each reports its own process group's CPU. With
    `bpf_pin_dir` the node runs the XDP datapath on its uplink. Without `tls`, --insecure.
    """
    optional = {
        "--uplink": uplink,
        "--etcd-prefix": key_root,
        "--check-host": check_host,
        "--bpf-pin-dir": bpf_pin_dir,
        "--descriptor-dir": descriptor_dir,
        "--announce": announce,
        "--http-listen": http_listen,
    }
    datapath = ["--datapath", "xdp", "--xdp-mode", xdp_mode] if bpf_pin_dir else []
    for prefix, files in (("--tls", tls), ("--etcd", etcd_tls)):
        if files is not None:
            optional |= {f"{prefix}-ca": str(files.ca), f"{prefix}-cert": str(files.cert)}
            optional[f"{prefix}-key"] = str(files.key)
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
        *datapath,
        *(part for flag, value in optional.items() if value for part in (flag, value)),
        *([] if tls else ["--insecure"]),
        "--log-json",
    ]


class Topology:
    """Namespaces and root-namespace links a topology made, by name in `created` ("link:" for a
    link); `create()` builds it all or nothing, `destroy()` removes exactly what was made."""

    created: list[str]

    def _create(self) -> None:
        raise NotImplementedError

    def create(self) -> Self:
        try:
            self._create()
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self) -> None:
        for name in reversed(self.created):
            with contextlib.suppress(RuntimeError):  # already gone
                if name.startswith("link:"):
                    ip("link", "del", name.removeprefix("link:"))
                else:
                    ip("netns", "del", name)
        self.created.clear()


@dataclass
class NetLab(Topology):
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


def sysctl(ns: str, *settings: str) -> None:
    for setting in settings:
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", setting], check=True)


def free_net() -> str:
    """A 10.A/16 no route of this machine's root namespace touches yet."""
    taken = ip("-4", "route", "show", "table", "all")
    start = os.getpid() % 50 + next(_counter)
    for k in range(50):
        net = f"10.{150 + (start + k) % 50}"
        if f" {net}." not in f" {taken}" and f"\n{net}." not in taken:
            return net
    raise RuntimeError("no free 10.150-199.0.0/16 network for a lab")


VIP_SEGMENT = 2  # the subnet of the nodes that can hold the VIP (n1, n2)
ETCD_SUBNET = 5  # a multi-member etcd's members, each in its own namespace


@dataclass
class RoutedLab(Topology):
    """A client, a router and nodes in at least two subnets, all in network namespaces:

        root 10.A.0.2 -- router 10.A.0.1 (etcd on 10.A.2.1)
        client 10.A.1.2 -- router
        router br2 10.A.2.1/24 -- n1 10.A.2.11, n2 10.A.2.12   (the schedulers' segment)
        router br3 10.A.3.1/24 -- n3 10.A.3.13, n5 ...
        router br4 10.A.4.1/24 -- n4 10.A.4.14, n6 ...
        router br5 10.A.5.1/24 -- etcd e1 10.A.5.21, e2 .22, e3 .23   (--etcd-members 3)

    The VIPs (10.A.100.x) are on-link on br2: the router ARPs for them there, so the leader (n1
    or n2) answers. Servers answer clients straight through the router (rp_filter off there).
    The root namespace reaches every address through the router (one route, removed with the
    link), so clusterctl and tests run from it.
    """

    nodes: int
    prefix: str = field(default_factory=lambda: f"th{os.getpid() % 10000}r{next(_counter)}")
    net: str = field(default_factory=free_net)
    created: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.prefix}{role}"

    def node_ns(self, i: int) -> str:
        return self.ns(f"n{i}")

    @staticmethod
    def subnet(i: int) -> int:
        return VIP_SEGMENT if i <= 2 else 3 + (i - 3) % 2

    def node_ip(self, i: int) -> str:
        return f"{self.net}.{self.subnet(i)}.{10 + i}"

    def gateway(self, subnet: int) -> str:
        return f"{self.net}.{subnet}.1"

    @property
    def client_ip(self) -> str:
        return f"{self.net}.1.2"

    def vip(self, k: int = 10) -> str:
        return f"{self.net}.100.{k}"

    @property
    def root_if(self) -> str:
        return f"{self.prefix}h"

    def port_to(self, i: int) -> str:
        """The router's port towards node i (its counters show what reached the node)."""
        return f"p{i}"

    def _add_ns(self, role: str) -> str:
        ns = self.ns(role)
        ip("netns", "add", ns)
        self.created.append(ns)
        ip("link", "set", "lo", "up", netns=ns)
        return ns

    def _veth(self, ns: str, router_port: str, addr: str, gateway: str) -> None:
        r = self.ns("r")
        ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", router_port,
           "netns", r)  # fmt: skip
        ip("addr", "add", f"{addr}/24", "dev", "eth0", netns=ns)
        ip("link", "set", "eth0", "up", netns=ns)
        ip("link", "set", router_port, "up", netns=r)
        ip("route", "add", "default", "via", gateway, netns=ns)

    def _create(self) -> None:
        r = self._add_ns("r")
        sysctl(
            r,
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
        )
        ip("link", "add", self.root_if, "type", "veth", "peer", "name", "toh", "netns", r)
        self.created.append(f"link:{self.root_if}")
        ip("addr", "add", f"{self.net}.0.2/30", "dev", self.root_if)
        ip("link", "set", self.root_if, "up")
        ip("addr", "add", f"{self.net}.0.1/30", "dev", "toh", netns=r)
        ip("link", "set", "toh", "up", netns=r)
        ip("route", "add", f"{self.net}.0.0/16", "via", f"{self.net}.0.1", "dev", self.root_if)
        for subnet in sorted({self.subnet(i) for i in range(1, self.nodes + 1)}):
            ip("link", "add", f"br{subnet}", "type", "bridge", netns=r)
            ip("addr", "add", f"{self.gateway(subnet)}/24", "dev", f"br{subnet}", netns=r)
            ip("link", "set", f"br{subnet}", "up", netns=r)
        ip("route", "add", f"{self.net}.100.0/24", "dev", "br2", netns=r)
        c = self._add_ns("c")
        ip("link", "add", "eth0", "netns", c, "type", "veth", "peer", "name", "pc", "netns", r)
        ip("addr", "add", f"{self.client_ip}/24", "dev", "eth0", netns=c)
        ip("link", "set", "eth0", "up", netns=c)
        ip("addr", "add", f"{self.gateway(1)}/24", "dev", "pc", netns=r)
        ip("link", "set", "pc", "up", netns=r)
        ip("route", "add", "default", "via", self.gateway(1), netns=c)
        for i in range(1, self.nodes + 1):
            ns = self._add_ns(f"n{i}")
            self._veth(ns, self.port_to(i), self.node_ip(i), self.gateway(self.subnet(i)))
            ip("link", "set", self.port_to(i), "master", f"br{self.subnet(i)}", netns=r)

    def etcd_ns(self, k: int) -> str:
        return self.ns(f"e{k}")

    def etcd_ip(self, k: int) -> str:
        """etcd member k of a multi-member lab: its own namespace on the router's br5."""
        return f"{self.net}.{ETCD_SUBNET}.{20 + k}"

    def add_etcd_members(self, count: int) -> None:
        r = self.ns("r")
        ip("link", "add", f"br{ETCD_SUBNET}", "type", "bridge", netns=r)
        ip("addr", "add", f"{self.gateway(ETCD_SUBNET)}/24", "dev", f"br{ETCD_SUBNET}", netns=r)
        ip("link", "set", f"br{ETCD_SUBNET}", "up", netns=r)
        for k in range(1, count + 1):
            ns = self._add_ns(f"e{k}")
            self._veth(ns, f"pe{k}", self.etcd_ip(k), self.gateway(ETCD_SUBNET))
            ip("link", "set", f"pe{k}", "master", f"br{ETCD_SUBNET}", netns=r)

    def native_xdp_wire(self) -> None:
        """Make the veths carry native XDP_TX: an XDP_PASS program on the router's end of the
        links of the nodes that can schedule (the VIP's segment; veth delivers XDP_TX frames
        only to a peer with a program, and a program there costs every large frame from that
        node a copy), and no checksum/segmentation offload on the client (native XDP on veth
        cannot finish a partial checksum). Real NICs need neither."""
        obj = str(build("pass"))
        for i in (i for i in range(1, self.nodes + 1) if self.subnet(i) == VIP_SEGMENT):
            ip("link", "set", "dev", self.port_to(i), "xdpdrv", "obj", obj, "sec", "xdp",
               netns=self.ns("r"))  # fmt: skip
        subprocess.run(self.exec(self.ns("c"), "ethtool", "-K", "eth0", "tx", "off"),
                       check=True, capture_output=True)  # fmt: skip

    def exec(self, ns: str, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def tx_bytes(self, router_port: str) -> int:
        """Bytes the router sent out of one of its ports."""
        out = ip("-s", "-j", "link", "show", router_port, netns=self.ns("r"))
        return int(json.loads(out)[0]["stats64"]["tx"]["bytes"])
