"""The lab's life cycle: a whole tcphop cluster on one machine, in network namespaces.

`up` builds a `RoutedLab` (client, router, nodes over at least two subnets), mounts a bpf
filesystem for the nodes' pinned maps, starts the lab's etcd (lab/etcd.py: one member on the
router, or a 3- or 5-member cluster in namespaces of their own) and, in each node's namespace,
one tcphopd (XDP datapath on eth0, native mode by default) and the HTTP test service bound to
the lab's VIP. Processes get sessions of their own so they outlive the command; everything made
is recorded in `<dir>/lab.json` as it is made. `down` stops exactly those processes (checking
each PID still runs the command the lab started, so a reused PID is never killed), deletes
exactly those namespaces and links, unmounts, and removes its files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from cluster.model import ServiceSpec
from cluster.pki import certificate
from cluster.tls import Access, TlsFiles
from datapath.libbpf import BpfError
from lab import etcd as lab_etcd
from lab import services
from lab.netns import VIP_SEGMENT, RoutedLab, netns_available, node_command
from lab.services import APP_PORT, SERVICE_PORT
from lab.state import (
    DEMO_FILE,
    PKI_DIR,
    STATE_FILE,
    LabProcess,
    LabState,
    default_dir,
    running_endpoints,
)

__all__ = [  # with the state's vocabulary (lab/state.py), which is the life cycle's too
    "API_PORT",
    "APP_PORT",
    "SERVICE_PORT",
    "LabProcess",
    "LabState",
    "curl",
    "default_dir",
    "down",
    "download_from",
    "handoff_socket",
    "in_client",
    "running_endpoints",
    "sample_l7_service",
    "sample_service",
    "served_by",
    "spawn",
    "start_app",
    "start_node",
    "start_service",
    "up",
]
API_PORT = 7700
HTTP_PORT = 7702


def spawn(state: LabState, name: str, cmd: list[str], marker: str, endpoint: str) -> LabProcess:
    """Start a detached process with its output in the lab's logs (`down` stops it by PID)."""
    logs = Path(state.directory) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return LabProcess.spawn(name, cmd, logs / f"{name}.log", marker, endpoint)


def start_node(state: LabState, i: int) -> LabProcess:
    """Start node i's tcphopd in its namespace (XDP on eth0, maps pinned under the lab).

    In a native lab only the nodes that can schedule attach natively: on a veth, native XDP
    copies every frame that arrives without XDP_TX behind it, which costs the receivers more
    than generic XDP does (measured with bench/hop.py). Real NICs have no such trade-off.
    """
    assert state.etcd is not None
    lab, node = state.lab, f"n{i}"
    endpoint = f"{lab.node_ip(i)}:{API_PORT}"
    cmd = node_command(
        node,
        state.etcd_url,
        endpoint,
        uplink="eth0",
        bpf_pin_dir=str(Path(state.directory) / "bpf" / node),
        xdp_mode=state.xdp_mode if lab.subnet(i) == VIP_SEGMENT else "generic",
        descriptor_dir=str(Path(handoff_socket(state)).parent),
        tls=state.tls(node),
        etcd_tls=state.tls(node),
        # Only the VIP's segment can answer ARP for it; the others announce their own subnet.
        announce=f"{lab.vip()}/24" if lab.subnet(i) == VIP_SEGMENT else f"{lab.node_ip(i)}/24",
        http_listen=f"{lab.node_ip(i)}:{HTTP_PORT}",
    )
    proc = spawn(state, node, lab.exec(lab.node_ns(i), *cmd), f"--listen\0{endpoint}", endpoint)
    proc.http = f"{lab.node_ip(i)}:{HTTP_PORT}"
    return proc


def start_service(state: LabState, i: int) -> LabProcess:
    """Start the HTTP test service of node i, bound to the lab's VIP."""
    lab, bind = state.lab, f"{state.vip}:{SERVICE_PORT}"
    cmd = [sys.executable, "-m", "lab.testservice", "--bind", bind, "--name", f"n{i}"]
    marker = f"--name\0n{i}"
    return spawn(state, f"http-n{i}", lab.exec(lab.node_ns(i), *cmd), marker, bind)


def start_app(state: LabState, i: int) -> LabProcess:
    """Start node i's application behind L7 services: the same test service on
    127.0.0.1:APP_PORT (splice delivery) that also takes hand-overs on handoff_socket(state)."""
    lab, bind = state.lab, f"127.0.0.1:{APP_PORT}"
    path = handoff_socket(state).replace("{node}", f"n{i}")
    cmd = [sys.executable, "-m", "lab.testservice", "--bind", bind, "--name", f"n{i}"]
    cmd += ["--handoff-socket", path]
    return spawn(state, f"app-n{i}", lab.exec(lab.node_ns(i), *cmd), f"\0{path}", bind)


def handoff_socket(state: LabState) -> str:
    """The Unix socket template of descriptor delivery in this lab ({node}: the node id)."""
    return str(Path(state.directory) / "hop" / "{node}.sock")


class LabError(Exception):
    pass


def make_pki(directory: Path, lab: RoutedLab, etcd_hosts: tuple[str, ...]) -> TlsFiles:
    """The lab's CA under <dir>/pki: a node certificate per node, admin and reader client
    certificates, and etcd's server certificate (returned, for etcd)."""
    pki = directory / PKI_DIR
    for i in range(1, lab.nodes + 1):
        certificate(pki, f"n{i}", Access.NODE, f"n{i}", (lab.node_ip(i),), "tcphop lab CA")
    for access in (Access.ADMIN, Access.READER):
        certificate(pki, str(access), access)
    return certificate(pki, "etcd", None, sans=etcd_hosts)


def up(
    directory: Path,
    nodes: int,
    xdp_mode: str = "native",
    secure: bool = True,
    progress: Callable[[str], None] = lambda line: None,
    etcd_members: int = 1,
) -> LabState:
    """Build the lab and start everything; raise LabError if a lab already runs there.
    `progress` hears one line per step."""
    if not 1 <= nodes <= 16:
        raise LabError(f"--nodes: {nodes} is not in 1..16")
    if etcd_members not in lab_etcd.MEMBER_COUNTS:
        choices = ", ".join(map(str, lab_etcd.MEMBER_COUNTS))
        raise LabError(f"--etcd-members: {etcd_members} is not one of {choices}")
    if xdp_mode not in ("native", "generic"):
        raise LabError(f"--xdp-mode: {xdp_mode!r} is not one of native, generic")
    existing = LabState.load(directory)
    if existing and any(p.running() for p in existing.processes):
        raise LabError(f"a lab is already up in {directory}; run `clusterctl lab down` first")
    ok, why = netns_available()
    if not ok:
        raise LabError(f"the lab needs root and network namespaces: {why}")
    directory.mkdir(parents=True, exist_ok=True)
    lab = RoutedLab(nodes)
    state = LabState(str(directory), lab.prefix, lab.net, nodes, xdp_mode, created=lab.created)
    state.save()
    try:
        lab.create()
        state.save()
        progress(f"namespaces and links: {len(lab.created)} made")
        if xdp_mode == "native":
            lab.native_xdp_wire()
        bpf = directory / "bpf"
        bpf.mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "bpf", "bpf", str(bpf)], check=True, capture_output=True)
        state.mounts.append(str(bpf))
        state.save()
        tls = make_pki(directory, lab, lab_etcd.hosts(lab, etcd_members)) if secure else None

        def record(member: LabProcess) -> None:
            if state.etcd is None:
                state.etcd = member
            else:
                state.etcd_peers.append(member)
            state.save()

        lab_etcd.start(lab, directory, etcd_members, tls, record)
        progress(f"etcd up at {state.etcd_url}" + (" (TLS, lab CA)" if secure else " (plaintext)"))
        for i in range(1, nodes + 1):
            state.services.append(start_service(state, i))
            state.services.append(start_app(state, i))
            state.nodes.append(start_node(state, i))
            state.save()
            progress(f"n{i} started in {lab.node_ns(i)} (pid {state.nodes[-1].pid})")
    except (subprocess.CalledProcessError, RuntimeError, TimeoutError, OSError, BpfError) as e:
        down(directory)
        detail = e.stderr.decode().strip() if isinstance(e, subprocess.CalledProcessError) else e
        raise LabError(f"lab up failed: {detail}") from None
    return state


def down(directory: Path) -> LabState | None:
    """Stop what `up` started in directory, delete what it made; None if no lab is there."""
    state = LabState.load(directory)
    if state is None:
        return None
    for proc in state.processes:  # nodes first: they revoke their leases in etcd
        proc.stop()
    RoutedLab(state.size, state.prefix, state.net, list(state.created)).destroy()
    for mount in state.mounts:
        subprocess.run(["umount", mount], check=False, capture_output=True)
    for made in ("etcd", "logs", "bpf", "hop", PKI_DIR):
        path = directory / made
        if path.is_dir() and not os.path.ismount(path):
            shutil.rmtree(path, ignore_errors=True)
    for name in (STATE_FILE, DEMO_FILE):
        (directory / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: something else lives there; leave it
        directory.rmdir()
    return state


def sample_service(state: LabState) -> ServiceSpec:
    """The demo's L4 service on the lab's VIP (lab/services.py)."""
    return services.web(state.vip)


def sample_l7_service(state: LabState) -> ServiceSpec:
    """The demo's L7 service on the lab's VIP (lab/services.py)."""
    return services.shop(state.vip, state.size)


def in_client(
    state: LabState, *cmd: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command in the lab's client namespace; its output as text."""
    lab = state.lab
    return subprocess.run(
        lab.exec(lab.ns("c"), *cmd),
        capture_output=True,
        text=True,
        timeout=timeout_s + 10,
        check=False,
    )


def curl(state: LabState, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """curl from the lab's client namespace."""
    return in_client(state, "curl", "-sS", "--max-time", str(int(timeout_s)), *args,
                     timeout_s=timeout_s)  # fmt: skip


def served_by(state: LabState, count: int) -> list[str]:
    """The node that served each of `count` requests, each on a new connection to the VIP."""
    url = f"http://{state.vip}:{SERVICE_PORT}/"
    done = curl(state, "-H", "Connection: close", *([url] * count))
    if done.returncode != 0:
        raise LabError(f"curl through the VIP failed: {done.stderr.strip()}")
    return done.stdout.split()


_DOWNLOAD_FROM = """
import socket, sys
vip, servers, size = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])

def answer(c, f, path):
    c.sendall(b"GET " + path + b" HTTP/1.1\\r\\nHost: lab\\r\\n\\r\\n")
    head = {}
    while (line := f.readline().strip()):
        k, _, v = line.decode().partition(":")
        head[k.lower()] = v.strip()
    left, got = int(head.get("content-length", 0)), 0
    while left > got and (chunk := f.read(min(left - got, 1 << 20))):
        got += len(chunk)
    return head.get("x-served-by", ""), got

for _ in range(200):
    with socket.create_connection((vip, 80), timeout=30) as c, c.makefile("rb") as f:
        server, _ = answer(c, f, b"/")
        if server in servers:
            print(*answer(c, f, b"/bytes/%d" % size))  # the same connection: the same server
            break
else:
    sys.exit("no connection reached " + ",".join(servers))
"""


def download_from(
    state: LabState, servers: list[str], size: int
) -> subprocess.CompletedProcess[str]:
    """From the client namespace, open connections to the VIP until one is served by one of
    `servers` (the scheduler's choice), then download `size` bytes on that same keep-alive
    connection. Prints the server and the bytes it sent."""
    script = (sys.executable, "-c", _DOWNLOAD_FROM, state.vip, ",".join(servers), str(size))
    return in_client(state, *script, timeout_s=110)
