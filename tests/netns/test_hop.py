"""The connection hop on real interfaces: both XDP programs attached to veths across subnets.

client -> router -> scheduler (tcphop_sched, generic XDP): the client's packets are encapsulated
to a server in another subnet -> router -> server (tcphop_decap): stripped, served on the VIP
bound to lo, and answered straight to the client through the router. Real TCP from the client
namespace; the router's counters show that response bytes never go to the scheduler.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from cli.netlab import RoutedLab, ip, netns_available
from datapath import layout, maglev
from datapath.libbpf import BpfObject
from tests.conftest import load_bpf, need, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.bpf]
XDP_FLAGS_SKB_MODE = 2  # generic XDP: veth native XDP_TX needs a program on the peer
SERVE = (  # answers "GET /bytes/N" with N bytes and "PUT" with the sha256 of what it read
    "import hashlib, socket, sys, threading\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind((sys.argv[1], 80)); s.listen(16)\n"
    "def serve(c):\n"
    "    f = c.makefile('rb'); line = f.readline().split()\n"
    "    if line[0] == b'PUT':\n"
    "        n = int(line[1]); h = hashlib.sha256(f.read(n)).hexdigest().encode()\n"
    "        c.sendall(sys.argv[2].encode() + b' ' + h)\n"
    "    else:\n"
    "        c.sendall(sys.argv[2].encode() + b' ' + b'x' * int(line[1]))\n"
    "    c.close()\n"
    "while True:\n"
    "    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()\n"
)
CLIENT = (  # one request through the VIP; prints the server's name and a digest of the answer
    "import hashlib, socket, sys\n"
    "c = socket.create_connection((sys.argv[1], 80), timeout=10)\n"
    "if sys.argv[2] == 'put':\n"
    "    data = b'u' * int(sys.argv[3]); c.sendall(b'PUT %d\\n' % len(data) + data)\n"
    "else:\n"
    "    c.sendall(b'GET %s\\n' % sys.argv[3].encode())\n"
    "got = b''\n"
    "while chunk := c.recv(65536): got += chunk\n"
    "name, _, rest = got.partition(b' ')\n"
    "print(name.decode(), len(rest), rest[:64].decode() if sys.argv[2] == 'put' else '')\n"
)


def attach(ns: str, prog_fd: int) -> None:
    with IPRoute(netns=ns) as ipr:
        index = ipr.link_lookup(ifname="eth0")[0]
        ipr.link(
            "set",
            index=index,
            xdp={"attrs": [("IFLA_XDP_FD", prog_fd), ("IFLA_XDP_FLAGS", XDP_FLAGS_SKB_MODE)]},
        )


def sysctl(ns: str, *settings: str) -> None:
    for setting in settings:
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", setting], check=True)


@pytest.fixture
def hop() -> Iterator[tuple[RoutedLab, BpfObject]]:
    ok, why = netns_available()
    need("netns", ok, why)
    sched = load_bpf()
    lab = RoutedLab(2).create()
    helpers: list[subprocess.Popen[bytes]] = []
    try:
        servers = {f"v{i}": i for i in (1, 2)}
        for name, i in servers.items():
            ns = lab.ns(name)
            ip("addr", "add", f"{lab.vip}/32", "dev", "lo", netns=ns)
            sysctl(
                ns,
                "net.ipv4.conf.eth0.arp_ignore=1",
                "net.ipv4.conf.eth0.arp_announce=2",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.eth0.rp_filter=0",
            )
            # Encapsulation adds 20 bytes to client->server segments: advertise a smaller MSS.
            ip(
                "route",
                "replace",
                "default",
                "via",
                f"{lab.net}.{10 + i}.1",
                "advmss",
                "1400",
                netns=ns,
            )
            decap = load_bpf()
            decap.update(layout.TRUSTED_MAP, socket.inet_aton(lab.scheduler_ip), b"\x01")
            attach(ns, decap.prog_fd(layout.DECAP_PROG))
            helpers.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", ns, sys.executable, "-c", SERVE, lab.vip, name]
                )
            )
        sched.update(layout.SCHED_CONFIG_MAP, layout.u32(0), socket.inet_aton(lab.scheduler_ip))
        router_mac = lab.router_mac("tos")  # the next hop towards both server subnets
        for i in servers.values():
            sched.update(
                layout.BACKENDS_MAP, layout.u32(i - 1), layout.backend(lab.server_ip(i), router_mac)
            )
        sched.update(layout.VIPS_MAP, layout.vip_key(lab.vip, 80), layout.vip_meta(0, False))
        table = maglev.build({"v1": 100, "v2": 100}, layout.RING_SIZE)
        for slot, name in enumerate(table):
            sched.update(layout.RINGS_MAP, layout.u32(slot), layout.u32(servers[name]))
        attach(lab.ns("s"), sched.prog_fd(layout.SCHED_PROG))
        for name in servers:
            wait_for(lambda n=name: listening(lab, n), 10, f"{name}'s service")
        yield lab, sched
    finally:
        for proc in helpers:
            proc.kill()
            proc.wait()
        lab.destroy()


def listening(lab: RoutedLab, server: str) -> bool:
    out = subprocess.run(
        ["ip", "netns", "exec", lab.ns(server), "ss", "-Hltn", "sport = :80"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return lab.vip in out


def request(lab: RoutedLab, *args: str) -> list[str]:
    done = subprocess.run(
        ["ip", "netns", "exec", lab.ns("c"), sys.executable, "-c", CLIENT, lab.vip, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def tx_bytes(lab: RoutedLab, ifname: str) -> int:
    out = ip("-s", "-j", "link", "show", ifname, netns=lab.ns("r"))
    return int(json.loads(out)[0]["stats64"]["tx"]["bytes"])


def test_connections_hop_to_servers_in_two_subnets_and_replies_skip_the_scheduler(
    hop: tuple[RoutedLab, BpfObject],
) -> None:
    lab, sched = hop
    before = tx_bytes(lab, "tos")  # router -> scheduler
    served = [request(lab, "get", "1000")[0] for _ in range(20)]
    assert set(served) == {"v1", "v2"}  # both subnets got connections
    _, size = request(lab, "get", str(5 * 2**20))
    assert int(size) == 5 * 2**20
    to_scheduler = tx_bytes(lab, "tos") - before
    assert to_scheduler < 2**20  # only client->server packets went there, not 5 MB of replies
    assert sched.percpu_sum(layout.SCHED_STATS_MAP, layout.u32(layout.SchedStat.ENCAPSULATED)) > 0


def test_a_large_upload_through_the_hop_arrives_intact(hop: tuple[RoutedLab, BpfObject]) -> None:
    lab, _ = hop
    size = 8 * 2**20
    name, _, digest = request(lab, "put", str(size))
    assert name in ("v1", "v2")
    assert digest == hashlib.sha256(b"u" * size).hexdigest()[:64]
    assert os.path.exists(f"/var/run/netns/{lab.ns('c')}")
