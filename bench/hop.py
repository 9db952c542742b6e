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
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from handoff import HAPROXY_L7_PORT, L7_PORT, delivery_cases, delivery_services, l7_cases
from measure import proc_cpu_s, wrk, xdp_prog_id, xdp_run_time_s

from cluster.model import HealthCheck, Mode, Policy, Pool
from cluster.sdk import ClusterClient
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--insecure", action="store_true", help="the lab without TLS")
    args = parser.parse_args()
    missing = [t for t in ("wrk", "haproxy", "bpftool") if not _which(t)]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: apt-get install wrk haproxy bpftool")
    with tempfile.TemporaryDirectory(prefix="th-bench-") as tmp:
        env = {**os.environ, "TCPHOP_LAB_DIR": str(Path(tmp) / "lab")}
        up = subprocess.run(
            [sys.executable, "-m", "cli.main", "lab", "up", "--nodes", str(args.nodes)]
            + (["--insecure"] if args.insecure else []),
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
    asyncio.run(prepare(state, args))
    for i in range(1, args.nodes + 1):  # the baselines' servers: each node's own address
        bind = f"{net.node_ip(i)}:{BASE_PORT}"
        cmd = [sys.executable, "-m", "lab.testservice", "--bind", bind, "--name", f"n{i}"]
        state.services.append(
            lab.spawn(state, f"base-n{i}", net.exec(net.node_ns(i), *cmd), f"--bind\0{bind}", bind)
        )
    state.save()
    haproxy = subprocess.Popen(
        net.exec(net.node_ns(1), "haproxy", "-db", "-f", haproxy_cfg(state, args, tmp))
    )
    subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"], check=True)
    try:
        time.sleep(1.5)
        rows = small_requests(state, args)
        prog = xdp_prog_id(net.node_ns(1))
        cpu = bulk_cpu(state, args, haproxy.pid, prog)
        l7 = l7_cases(state, args, haproxy.pid, prog)
        modes = delivery_cases(state, args)
    finally:
        haproxy.terminate()
        haproxy.wait()
        subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=0"], check=True)
    report(state, args, rows, cpu, l7)
    print("\n| L7 new connections by delivery | req/s | p50 ms | p99 ms | vs splice |")
    print("|---|---:|---:|---:|---:|")
    for mode, r in modes.items():
        print(f"| {mode} | {r.requests_s:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
              f"{r.requests_s / modes['splice'].requests_s:.2f} |")  # fmt: skip


async def prepare(state: lab.LabState, args: argparse.Namespace) -> None:
    """The L4 service over every node and the L7 one, until every server is eligible.

    The L7 service leaves the scheduler out of its pool: a connection placed on the scheduler
    is relayed by tcphopd itself, which would count serving work as scheduling work."""
    l7_pool = Pool(tuple(f"n{i}" for i in range(2, args.nodes + 1)))
    async with ClusterClient(
        state.endpoints, tls=(t := state.admin_tls()), insecure=t is None
    ) as c:
        web = lab.sample_service(state)
        await c.apply_service(web)
        shop = replace(web, name="shop", port=L7_PORT, mode=Mode.L7, policy=Policy.ROUND_ROBIN,
                       health_check=HealthCheck(), pool=l7_pool)  # fmt: skip
        await c.apply_service(shop)
        for name, port, delivery, target in delivery_services(state):
            await c.apply_service(
                replace(shop, name=name, port=port, delivery=delivery, target=target)
            )
        deadline = time.monotonic() + 30
        while True:
            rings = (await c.datapath()).rings
            l7 = ["shop", *(name for name, *_ in delivery_services(state))]
            if len(rings.get("web", {})) >= args.nodes and all(
                len(rings.get(name, {})) >= len(l7_pool.nodes) for name in l7
            ):
                return
            if time.monotonic() > deadline:
                sys.exit("not every server became eligible within 30 s")
            await asyncio.sleep(0.2)


def haproxy_cfg(state: lab.LabState, args: argparse.Namespace, tmp: Path) -> str:
    net, cfg = state.lab, tmp / "haproxy.cfg"
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
    return str(cfg)


def small_requests(state: lab.LabState, args: argparse.Namespace) -> list[list[object]]:
    """Small responses, keep-alive and new connections: through the VIP, direct, HAProxy."""
    net = state.lab
    targets = {
        "tcphop (VIP)": f"http://{state.vip}/",
        "direct (n3)": f"http://{net.node_ip(3)}:{BASE_PORT}/",
        "HAProxy": f"http://{net.node_ip(1)}:{HAPROXY_PORT}/",
    }
    for url in targets.values():  # warm up: ARP, flows, page cache, CPU frequency
        wrk(state, url, 3, args.conns, False)
    rows: list[list[object]] = []
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
    return rows


def bulk_cpu(
    state: lab.LabState, args: argparse.Namespace, haproxy_pid: int, prog: int
) -> dict[str, tuple[float, int]]:
    """1 MiB responses: scheduler CPU seconds and bytes served, per way of scheduling."""
    leader_pid, url = state.nodes[0].pid, f"http://{state.vip}/bytes/{2**20}"
    cases: tuple[tuple[str, str, Callable[[], float]], ...] = (
        ("tcphop: XDP program", url, lambda: xdp_run_time_s(prog)),
        ("tcphop: XDP + tcphopd", url, lambda: xdp_run_time_s(prog) + proc_cpu_s(leader_pid)),
        (
            "HAProxy",
            f"http://{state.lab.node_ip(1)}:{HAPROXY_PORT}/bytes/{2**20}",
            lambda: proc_cpu_s(haproxy_pid),
        ),
    )
    cpu: dict[str, tuple[float, int]] = {}
    for t, target, measure in cases:
        before = measure()
        r = wrk(state, target, args.seconds, 8, False)
        cpu[t] = (measure() - before, r.bytes_read)
    return cpu


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


if __name__ == "__main__":
    main()
