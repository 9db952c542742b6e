"""Hop benchmark: the XDP connection hop vs. straight to a server vs. HAProxy, in one lab.

    sudo .venv/bin/python bench/hop.py [--nodes 4] [--seconds 10]
    (needs wrk, haproxy and bpftool: apt-get install wrk haproxy bpftool; `./run.sh bench`)

Builds the lab (`clusterctl lab up`: client, router, nodes over two subnets, tcphopd with XDP
on every node) and applies an L4 service on the VIP. Each node also runs the HTTP test service
on its own address, port 8080, for the baselines. HAProxy (mode tcp, round-robin over the same
servers) runs in the scheduler's namespace. wrk runs in the client namespace:

- small responses on keep-alive connections and on a new connection per request (wrk with
  `Connection: close`): requests/s, p50 and p99 latency, through the VIP, straight to one
  server, and through HAProxy;
- 1 MiB responses: scheduler CPU seconds per GiB served. tcphop: the leader's XDP program run
  time (kernel.bpf_stats_enabled), then that plus the leader's whole tcphopd CPU (control plane,
  agent and API, which do not grow with traffic); HAProxy: its process CPU. Neither counts
  softirq work outside the program or the process (for generic XDP: the skb around it).

Everything runs on one machine (2 cores here): servers, client and scheduler share the CPUs,
so ratios from the same run matter, not absolute numbers. Prints one table; the README keeps it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from cluster.model import HealthCheck, Mode, Policy, Pool
from cluster.sdk import ClusterClient, DatapathView
from lab import lifecycle as lab

ROOT = Path(__file__).resolve().parent.parent
BASE_PORT = 8080
HAPROXY_PORT = 8081
HAPROXY_CFG = """global
    maxconn 4000
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend bench
    bind {bind}
    default_backend servers
backend servers
    balance roundrobin
{servers}
frontend web7
    mode http
    bind {bind7}
    timeout http-request 5s
    default_backend servers7
backend servers7
    mode http
    balance roundrobin
{servers7}
"""
L7_PORT = 8080  # the lab's L7 service; its application listens on 127.0.0.1:8080 per node
HAPROXY_L7_PORT = 8083


@dataclass
class WrkResult:
    requests_s: float
    p50_ms: float
    p99_ms: float
    bytes_read: int
    errors: int


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _bytes(text: str) -> int:
    value, unit = re.fullmatch(r"([\d.]+)([KMGT]?B)", text).groups()  # type: ignore[union-attr]
    return int(float(value) * {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}[unit])


def wrk(state: lab.LabState, url: str, seconds: int, conns: int, close: bool) -> WrkResult:
    net = state.lab
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", url]
    if close:
        cmd[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(
        net.exec(net.ns("c"), *cmd), capture_output=True, text=True, check=True
    ).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    read = re.search(r"requests in [\d.]+\w+, (\S+) read", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(
        float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        _ms(latency["50"]),
        _ms(latency["99"]),
        _bytes(read.group(1)) if read else 0,
        (sum(int(x) for x in errors.groups()) if errors else 0)
        + (int(non2xx.group(1)) if non2xx else 0),
    )


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def xdp_prog_id(ns: str) -> int:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "-d", "link", "show", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(json.loads(out)[0]["xdp"]["prog"]["id"])


def xdp_run_time_s(prog_id: int) -> float:
    out = subprocess.run(
        ["bpftool", "-j", "prog", "show", "id", str(prog_id)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(json.loads(out).get("run_time_ns", 0)) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--conns", type=int, default=32)
    args = parser.parse_args()
    missing = [t for t in ("wrk", "haproxy", "bpftool") if not _which(t)]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: apt-get install wrk haproxy bpftool")
    with tempfile.TemporaryDirectory(prefix="th-bench-") as tmp:
        env = {**os.environ, "TCPHOP_LAB_DIR": str(Path(tmp) / "lab")}
        up = subprocess.run(
            [sys.executable, "-m", "cli.main", "lab", "up", "--nodes", str(args.nodes)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if up.returncode != 0:
            sys.exit(f"lab up failed: {up.stderr}")
        try:
            run(Path(tmp), args)
        finally:
            subprocess.run(
                [sys.executable, "-m", "cli.main", "lab", "down"],
                env=env,
                capture_output=True,
                check=False,
            )


def _which(tool: str) -> bool:
    return shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is not None


def run(tmp: Path, args: argparse.Namespace) -> None:
    state = lab.LabState.load(tmp / "lab")
    assert state is not None
    net = state.lab

    # The L7 service leaves the scheduler out of its pool: a connection placed on the scheduler
    # is relayed by tcphopd itself, which would count serving work as scheduling work.
    l7_pool = Pool(tuple(f"n{i}" for i in range(2, args.nodes + 1)))

    async def prepare() -> None:
        async with ClusterClient(state.endpoints) as c:
            await c.apply_service(lab.sample_service(state))
            await c.apply_service(
                replace(lab.sample_service(state), name="shop", port=L7_PORT, mode=Mode.L7,
                        policy=Policy.ROUND_ROBIN, health_check=HealthCheck(), pool=l7_pool)
            )  # fmt: skip
            deadline = time.monotonic() + 30
            while True:
                rings = (await c.datapath()).rings
                if len(rings.get("web", {})) >= args.nodes and len(rings.get("shop", {})) >= len(
                    l7_pool.nodes
                ):
                    break
                if time.monotonic() > deadline:
                    sys.exit("not every server became eligible within 30 s")
                await asyncio.sleep(0.2)

    asyncio.run(prepare())
    for i in range(1, args.nodes + 1):  # the baselines' servers: each node's own address
        bind = f"{net.node_ip(i)}:{BASE_PORT}"
        cmd = [sys.executable, "-m", "lab.testservice", "--bind", bind, "--name", f"n{i}"]
        state.services.append(
            lab.spawn(state, f"base-n{i}", net.exec(net.node_ns(i), *cmd), f"--bind\0{bind}", bind)
        )
    state.save()
    scheduler_ns = net.node_ns(1)
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(
        HAPROXY_CFG.format(
            bind=f"{net.node_ip(1)}:{HAPROXY_PORT}",
            bind7=f"{net.node_ip(1)}:{HAPROXY_L7_PORT}",
            servers="\n".join(
                f"    server n{i} {net.node_ip(i)}:{BASE_PORT}" for i in range(1, args.nodes + 1)
            ),
            servers7="\n".join(
                f"    server n{i} {net.node_ip(i)}:{BASE_PORT}" for i in range(2, args.nodes + 1)
            ),
        )
    )
    haproxy = subprocess.Popen(net.exec(scheduler_ns, "haproxy", "-db", "-f", str(cfg)))
    subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"], check=True)
    try:
        time.sleep(1.5)
        targets = {
            "tcphop (VIP)": f"http://{state.vip}/",
            "direct (n3)": f"http://{net.node_ip(3)}:{BASE_PORT}/",
            "HAProxy": f"http://{net.node_ip(1)}:{HAPROXY_PORT}/",
        }
        for url in targets.values():  # warm up: ARP, flows, page cache, CPU frequency
            wrk(state, url, 3, args.conns, False)
        rows = []
        for label, close in (("keep-alive", False), ("new connection", True)):
            results = {
                t: wrk(state, url, args.seconds, args.conns, close) for t, url in targets.items()
            }
            for t, r in results.items():
                rows.append(
                    [
                        f"small, {label}",
                        t,
                        f"{r.requests_s:,.0f}",
                        f"{r.p50_ms:.2f}",
                        f"{r.p99_ms:.2f}",
                        f"{r.requests_s / results['direct (n3)'].requests_s:.2f}",
                        f"{r.requests_s / results['HAProxy'].requests_s:.2f}",
                        r.errors,
                    ]
                )
        leader_pid = state.nodes[0].pid
        prog = xdp_prog_id(scheduler_ns)
        cpu: dict[str, tuple[float, int]] = {}
        cases: tuple[tuple[str, str, Callable[[], float]], ...] = (
            (
                "tcphop: XDP program",
                f"http://{state.vip}/bytes/{2**20}",
                lambda: xdp_run_time_s(prog),
            ),
            (
                "tcphop: XDP + tcphopd",
                f"http://{state.vip}/bytes/{2**20}",
                lambda: xdp_run_time_s(prog) + proc_cpu_s(leader_pid),
            ),
            (
                "HAProxy",
                f"http://{net.node_ip(1)}:{HAPROXY_PORT}/bytes/{2**20}",
                lambda: proc_cpu_s(haproxy.pid),
            ),
        )
        for t, url, measure in cases:
            before = measure()
            r = wrk(state, url, args.seconds, 8, False)
            cpu[t] = (measure() - before, r.bytes_read)
        l7 = l7_cases(state, args, haproxy.pid, prog)
    finally:
        haproxy.terminate()
        haproxy.wait()
        subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=0"], check=True)
    report(state, args, rows, cpu, l7)


def report(
    state: lab.LabState,
    args: argparse.Namespace,
    rows: list[list[object]],
    cpu: dict[str, tuple[float, int]],
    l7: list[tuple[str, float, float]],
) -> None:
    per_gb = {t: s / (b / 2**30) for t, (s, b) in cpu.items()}
    print(
        f"# hop benchmark, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, {args.nodes} nodes,"
        f" {state.xdp_mode} XDP on the schedulers' veths,"
        f" wrk -t2 -c{args.conns} -d{args.seconds}s from the client namespace\n"
    )
    print("| case | through | req/s | p50 ms | p99 ms | vs direct | vs HAProxy | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
    print("\n| 1 MiB responses | scheduler CPU s | GiB served | CPU s per GiB | vs HAProxy |")
    print("|---|---:|---:|---:|---:|")
    for t, (s, b) in cpu.items():
        print(
            f"| {t} | {s:.3f} | {b / 2**30:.2f} | {per_gb[t]:.4f} | "
            f"{per_gb[t] / per_gb['HAProxy']:.3f} |"
        )

    print("\n| L7 (rules read, connection handed off) | value | HAProxy mode http | ratio |")
    print("|---|---:|---:|---:|")
    for label, ours, theirs in l7:
        ratio = f"{ours / theirs:.3f}" if theirs else ""
        print(f"| {label} | {ours:,.4g} | {theirs:,.4g} | {ratio} |" if theirs else
              f"| {label} | {ours:,.4g} | | |")  # fmt: skip


SEQUENTIAL = """
import socket, statistics, sys, time
took = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
    c.sendall(b"GET / HTTP/1.1\\r\\nHost: bench\\r\\nConnection: close\\r\\n\\r\\n")
    while c.recv(65536):
        pass
    c.close()
    took.append(time.perf_counter() - t)
print(statistics.median(took) * 1000)
"""


def sequential(state: lab.LabState, port: int, count: int) -> float:
    """Median ms of `count` requests, each on a new connection, one after the other."""
    net = state.lab
    cmd = net.exec(net.ns("c"), sys.executable, "-c", SEQUENTIAL, state.vip, str(port), str(count))
    return float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def l7_cases(
    state: lab.LabState, args: argparse.Namespace, haproxy_pid: int, prog: int
) -> list[tuple[str, float, float]]:
    """New connections through the L7 handoff (latency, handoffs per scheduler CPU-second) and 1 MiB
    responses (scheduler CPU per GiB), against HAProxy doing the same routing as a proxy."""
    net, leader = state.lab, state.nodes[0].pid
    ours_url = f"http://{state.vip}:{L7_PORT}"
    theirs_url = f"http://{net.node_ip(1)}:{HAPROXY_L7_PORT}"

    def datapath() -> DatapathView:
        async def get() -> DatapathView:
            async with ClusterClient(state.endpoints) as c:
                return await c.datapath("n1")

        return asyncio.run(get())

    quiet = sequential(state, L7_PORT, 300)  # one connection at a time: the handoff alone
    idle = datapath()
    wrk(state, ours_url + "/", 3, 8, True)  # warm-up
    wrk(state, theirs_url + "/", 3, 8, True)
    before, cpu0 = datapath(), proc_cpu_s(leader)
    ours = wrk(state, ours_url + "/", args.seconds, 16, True)
    after, cpu = datapath(), proc_cpu_s(leader) - cpu0
    handled = sum(
        after.handoff_stats.get(k, 0) - before.handoff_stats.get(k, 0)
        for k in ("handoffs_done", "served_locally")
    )
    hcpu0 = proc_cpu_s(haproxy_pid)
    theirs = wrk(state, theirs_url + "/", args.seconds, 16, True)
    hcpu = proc_cpu_s(haproxy_pid) - hcpu0
    theirs_per_cpu_s = theirs.requests_s * args.seconds / hcpu
    size = f"/bytes/{2**20}"

    def gib_s(r: WrkResult) -> float:
        return float(r.bytes_read / 2**30 / args.seconds)

    s0 = xdp_run_time_s(prog) + proc_cpu_s(leader)
    big = wrk(state, ours_url + size, args.seconds, 8, False)
    ours_gb = (xdp_run_time_s(prog) + proc_cpu_s(leader) - s0) / (big.bytes_read / 2**30)
    h0 = proc_cpu_s(haproxy_pid)
    hbig = wrk(state, theirs_url + size, args.seconds, 8, False)
    theirs_gb = (proc_cpu_s(haproxy_pid) - h0) / (hbig.bytes_read / 2**30)
    return [
        ("new connections: requests/s", ours.requests_s, theirs.requests_s),
        ("new connections: p50 ms (client)", ours.p50_ms, theirs.p50_ms),
        ("new connections: p99 ms (client)", ours.p99_ms, theirs.p99_ms),
        ("handoff latency p50 ms, one connection at a time", idle.handoff_p50_ms, 0.0),
        ("handoff latency p99 ms, one connection at a time", idle.handoff_p99_ms, 0.0),
        ("client request p50 ms, one connection at a time", quiet, 0.0),
        ("handoff latency p50 ms under load (read -> committed)", after.handoff_p50_ms, 0.0),
        ("handoff latency p99 ms under load", after.handoff_p99_ms, 0.0),
        ("connections per scheduler CPU-second", handled / cpu, theirs_per_cpu_s),
        ("1 MiB responses: GiB/s to the client", gib_s(big), gib_s(hbig)),
        ("1 MiB responses: scheduler CPU s per GiB", ours_gb, theirs_gb),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
