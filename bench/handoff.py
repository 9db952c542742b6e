"""The L7 handoff's benchmark cases (run by bench/hop.py in the same lab): new connections
through the handoff against HAProxy in mode http, the handoff alone, and 1 MiB responses."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys

from measure import WrkResult, proc_cpu_s, wrk, xdp_run_time_s

from cluster.model import Delivery
from cluster.sdk import ClusterClient, DatapathView
from lab import lifecycle as lab

L7_PORT = 8080  # the lab's L7 service; its application listens on 127.0.0.1:8080 per node
HAPROXY_L7_PORT = 8083


def delivery_services(state: lab.LabState) -> list[tuple[str, int, Delivery, str]]:
    """The same L7 service once per other delivery mode: name, port, delivery, target (the
    lab's application takes all of them: PROXY v2 or not, and hand-overs on its socket)."""
    return [
        ("shoppx", 8082, Delivery.PROXY_V2, f"127.0.0.1:{L7_PORT}"),
        ("shoptp", 8084, Delivery.TRANSPARENT, f"127.0.0.1:{L7_PORT}"),
        ("shopfd", 8081, Delivery.DESCRIPTOR, lab.handoff_socket(state)),
    ]


def delivery_cases(state: lab.LabState, args: argparse.Namespace) -> dict[str, WrkResult]:
    """New connections through the L7 service, per delivery mode (splice is the `shop`)."""
    ports = {"splice": L7_PORT} | {str(d): port for _, port, d, _ in delivery_services(state)}
    results = {}
    for mode, port in ports.items():
        url = f"http://{state.vip}:{port}/"
        wrk(state, url, 2, 16, True)  # warm-up
        results[mode] = wrk(state, url, args.seconds, 16, True)
    return results


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
            async with ClusterClient(
                state.endpoints, tls=(t := state.admin_tls()), insecure=t is None
            ) as c:
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
