"""`clusterctl lab demo`: real traffic through the lab's VIP, step by step.

Shares per server, direct return from a server in another subnet, the L7 handoff by rules, a
planned handover and a leader kill during downloads, a restart, then the event stream and the
status. It drives the cluster through the SDK and the lab's processes; what it shows goes to a
`Report`, which clusterctl renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from cluster.model import ClusterEvent, ClusterStatus, Role, ServiceSpec
from cluster.sdk import ClusterClient, NotLeader, Unavailable
from lab import lifecycle as lab
from lab.lifecycle import LabError


class Report(Protocol):
    """Where the demo's findings go (clusterctl prints them)."""

    def line(self, text: str) -> None: ...

    def table(self, rows: Sequence[Sequence[object]], header: Sequence[str]) -> None: ...

    def status(self, status: ClusterStatus) -> None: ...

    def event(self, event: ClusterEvent) -> None: ...

    def fact(self, name: str, value: object) -> None:
        """A measured result, as data (clusterctl writes them to <lab dir>/demo.json)."""
        ...


async def run(client: ClusterClient, state: lab.LabState, out: Report) -> None:
    """The whole demo, against a lab that is up."""
    start = (await client.status()).revision + 1
    await _shares(client, state, out)
    leader = await wait_leader(client, None)
    await _direct_return(client, state, leader, out)
    await _l7(client, state, out)
    target = await _planned_handover(client, state, leader, out)
    await _kill_and_restart(client, state, target, out)
    out.line(f"\n== events since revision {start}")
    await _print_events(client, start, out)
    out.line("\n== status")
    out.status(await client.status())


async def _shares(client: ClusterClient, state: lab.LabState, out: Report) -> None:
    spec: ServiceSpec = lab.sample_service(state)
    result = await client.apply_service(spec)
    out.line(
        f"== service/{spec.name} {result.result}: {spec.vip}:{spec.port} {spec.mode}, "
        f"{spec.policy} (kernel Maglev weights from load), every node"
    )
    await _wait_eligible(client, spec.name, len(state.nodes))
    out.line(f"\n== {DEMO_REQUESTS} requests, each on a new connection, from the client")
    served = await asyncio.to_thread(lab.served_by, state, DEMO_REQUESTS)
    counts = Counter(served)
    out.fact("shares", dict(sorted(counts.items())))
    net = state.lab
    out.table(
        [
            [
                n.name,
                f"{net.net}.{net.subnet(i)}.0/24",
                counts[n.name],
                f"{100 * counts[n.name] / max(len(served), 1):.0f} %",
            ]
            for i, n in enumerate(state.nodes, 1)
        ],
        ("SERVER", "SUBNET", "REQUESTS", "SHARE"),
    )


async def _planned_handover(
    client: ClusterClient, state: lab.LabState, leader: str, out: Report
) -> str:
    target = "n2" if leader != "n2" else "n1"
    out.line(f"\n== planned handover: designating {target} primary while {leader} leads,")
    out.line(f"   during a {DOWNLOAD_MB} MB download through the VIP (rate-limited)")
    download = _start_download(state)
    await asyncio.sleep(1.0)
    t0 = time.monotonic()
    await client.designate(target, Role.PRIMARY)
    await wait_leader(client, None, want=target)
    took_s = time.monotonic() - t0
    out.line(f"{target} leads after {took_s:.3f} s")
    result = await _finish_download(download)
    out.line(f"download: {_describe(result)}")
    out.fact("handover", {"to": target, "seconds": took_s, "download": result})
    return target


async def _kill_and_restart(
    client: ClusterClient, state: lab.LabState, leader: str, out: Report
) -> None:
    victim = next(n for n in state.nodes if n.name == leader)
    await asyncio.sleep(1)  # steady state: the backup has seen the new leader's API up
    out.line(f"\n== killing the leader {victim.name} (SIGKILL, pid {victim.pid}) during a")
    out.line(f"   {DOWNLOAD_MB} MB download")
    download = _start_download(state)
    await asyncio.sleep(1.0)
    t0 = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    new = await wait_leader(client, victim.name)
    took_s = time.monotonic() - t0
    out.line(f"{new} leads after {took_s:.3f} s")
    result = await _finish_download(download)
    out.line(f"download: {_describe(result)}")
    out.fact(
        "kill", {"killed": victim.name, "new_leader": new, "seconds": took_s, "download": result}
    )
    while (await client.get_node(victim.name)).alive:
        await asyncio.sleep(0.05)
    out.line(f"{victim.name}'s registration expired {time.monotonic() - t0:.2f} s after the kill")
    i = state.nodes.index(victim)
    state.nodes[i] = lab.start_node(state, i + 1)
    state.save()
    t0 = time.monotonic()
    while not (await client.get_node(victim.name)).alive:
        await asyncio.sleep(0.05)
    out.line(
        f"{victim.name} restarted (pid {state.nodes[i].pid}) and rejoined in "
        f"{time.monotonic() - t0:.2f} s"
    )
    await wait_leader(client, None, want=victim.name)  # the designated primary takes over again
    served = await asyncio.to_thread(lab.served_by, state, 60)
    out.line(f"60 more requests after the restart: {dict(sorted(Counter(served).items()))}")


DEMO_REQUESTS = 300
DOWNLOAD_MB = 50


async def _wait_eligible(client: ClusterClient, service: str, count: int) -> None:
    """Wait (up to 20 s) until the leader's Maglev ring names `count` servers."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with contextlib.suppress(Unavailable, NotLeader):
            if len((await client.datapath()).rings.get(service, {})) >= count:
                return
        await asyncio.sleep(0.2)
    raise LabError(f"not every server passed {service}'s health check within 20 s")


def _served_by(headers: str) -> str:
    """The X-Served-By header in curl's dumped response headers ("" when absent)."""
    return next(
        (line.split(":", 1)[1].strip() for line in headers.splitlines()
         if line.lower().startswith("x-served-by:")),
        "",
    )  # fmt: skip


async def _direct_return(
    client: ClusterClient, state: lab.LabState, leader: str, out: Report
) -> None:
    """A download the scheduler encapsulates to another server (in another subnet when there is
    one): the response goes from that server to the client, never through the scheduler."""
    net = state.lab
    index = {n.name: k for k, n in enumerate(state.nodes, 1)}
    others = [n for n in index if n != leader]
    far = [n for n in others if net.subnet(index[n]) != net.subnet(index[leader])]
    before_dp, before_link = await client.datapath(leader), net.tx_bytes(net.port_to(index[leader]))
    size = DOWNLOAD_MB * 2**20
    done = await asyncio.to_thread(lab.download_from, state, far or others, size)
    if done.returncode != 0:
        raise LabError(f"the download through the VIP failed: {done.stderr.strip()}")
    after_dp, after_link = await client.datapath(leader), net.tx_bytes(net.port_to(index[leader]))
    server, received = done.stdout.split()
    got = int(received)

    def delta(name: str) -> int:
        return after_dp.stats.get(name, 0) - before_dp.stats.get(name, 0)

    out.fact(
        "direct_return",
        {
            "server": server,
            "server_subnet": net.subnet(index[server]),
            "scheduler": leader,
            "scheduler_subnet": net.subnet(index[leader]),
            "bytes": got,
            "router_to_scheduler_bytes": after_link - before_link,
            "encapsulated": delta("encapsulated"),
            "vip_reply": delta("vip_reply"),
        },
    )
    where = f"{net.net}.{net.subnet(index[server])}.0/24"
    out.line(f"\n== direct return: a {DOWNLOAD_MB} MB download through the VIP")
    out.line(
        f"served by {server} ({where}): {got} bytes; the scheduler is "
        f"{leader} ({net.net}.{net.subnet(index[leader])}.0/24)"
    )
    out.line(
        f"router -> {leader} link during the download: "
        f"{(after_link - before_link) / 2**20:.2f} MB against {got / 2**20:.0f} MB of response "
        "(the client's ACKs only)"
    )
    out.line(
        f"{leader}'s XDP counters: encapsulated {delta('encapsulated')}, response packets "
        f"(vip_reply) {delta('vip_reply')}, served locally {delta('local')}, "
        f"dropped {sum(delta(k) for k in DROPS)}"
    )


DROPS = ("no_backend", "vip_fragment", "encap_failed", "untrusted")


async def _l7(client: ClusterClient, state: lab.LabState, out: Report) -> None:
    spec = lab.sample_l7_service(state)
    await client.apply_service(spec)
    rules = "; ".join(f"{r.name} -> {', '.join(r.pool.nodes)}" for r in spec.rules)
    out.line(
        f"\n== L7: service/{spec.name} on {spec.vip}:{spec.port} ({rules}; else {spec.policy})"
    )
    deadline = time.monotonic() + 20
    while len((await client.datapath()).rings.get(spec.name, {})) < len(state.nodes):
        if time.monotonic() > deadline:
            raise LabError(f"not every server passed {spec.name}'s health check within 20 s")
        await asyncio.sleep(0.2)
    before = (await client.datapath()).handoff_stats
    url = f"http://{spec.vip}:{spec.port}"
    cases: list[tuple[str, str, tuple[str, ...]]] = [
        ("GET /static/app.js", "/static/app.js", ())
    ] * 2
    if len(spec.rules) > 1:
        cases.append(("GET / with X-Tenant: blue", "/", ("-H", "X-Tenant: blue")))
    cases += [("GET /", "/", ())] * 4
    cases += [("GET / with Cookie: session=42", "/", ("-H", "Cookie: session=42"))] * 3
    routed: dict[str, list[str]] = {}
    for label, path, extra in cases:
        done = await asyncio.to_thread(
            lab.curl, state, "-sD", "-", "-o", "/dev/null", *extra, url + path
        )
        served = _served_by(done.stdout) or f"failed: {done.stderr.strip()}"
        routed.setdefault(label, []).append(served)
        out.line(f"{label:<32} -> {served}")
    view = await client.datapath()
    handed = view.handoff_stats.get("handoffs_done", 0) - before.get("handoffs_done", 0)
    local = view.handoff_stats.get("served_locally", 0) - before.get("served_locally", 0)
    out.fact("l7", {"routed": routed, "handed_off": handed, "served_locally": local})
    out.line(
        f"connections handed off with TCP_REPAIR: {handed}, "
        f"served by the scheduler itself: {local}; "
        f"handoff latency p50 {view.handoff_p50_ms:.2f} ms"
    )


def _start_download(state: lab.LabState) -> subprocess.Popen[str]:
    net = state.lab
    url = f"http://{state.vip}/bytes/{DOWNLOAD_MB * 2**20}"
    return subprocess.Popen(
        net.exec(net.ns("c"), "curl", "-sS", "--limit-rate", "15M", "-o", "/dev/null",
                 "-w", "%{size_download} %header{x-served-by}", url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


async def _finish_download(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = await asyncio.to_thread(proc.communicate)
    if proc.returncode != 0:
        return {"failed": err.strip(), "bytes": 0, "intact": False}
    size, _, server = out.partition(" ")
    return {"bytes": int(size), "server": server, "intact": int(size) == DOWNLOAD_MB * 2**20}


def _describe(download: dict[str, object]) -> str:
    if "failed" in download:
        return f"FAILED: {download['failed']}"
    intact = "intact" if download["intact"] else "SHORT"
    return f"{download['bytes']} bytes from {download['server']} ({intact})"


async def wait_leader(client: ClusterClient, not_node: str | None, want: str | None = None) -> str:
    """Wait (up to 10 s) for a leader other than not_node (and equal to want, if given)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(Unavailable):
            st = await client.status()
            if st.leader and st.leader.node_id != not_node and want in (None, st.leader.node_id):
                return st.leader.node_id
        await asyncio.sleep(0.01)
    raise LabError("no leader was elected within 10 s; see the lab's logs")


async def _print_events(client: ClusterClient, start: int, out: Report) -> None:
    head = (await client.status()).revision
    event: ClusterEvent
    try:
        async with asyncio.timeout(5):
            async for event in client.watch_events(start):
                out.event(event)
                if event.revision >= head:
                    break
    except TimeoutError:
        pass  # the newest revision was not an event of ours


async def wait_alive(client: ClusterClient, count: int, timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    alive: list[str] = []
    while len(alive) < count and time.monotonic() < deadline:
        with contextlib.suppress(Unavailable):  # the daemons are still starting
            alive = sorted(n.node_id for n in await client.list_nodes() if n.alive)
        await asyncio.sleep(0.1)
    return alive
