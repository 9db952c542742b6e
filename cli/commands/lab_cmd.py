"""clusterctl lab up | status | down | demo."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import click

from cli import lab
from cli.commands.cluster import NODE_HEADER, describe, node_rows, status_text
from cli.context import CliError, Context, pass_ctx
from cli.output import table
from cluster.model import ClusterEvent, Role
from cluster.sdk import ClusterClient, NotLeader, Unavailable

dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=None,
    help="Lab state directory [env TCPHOP_LAB_DIR; default ~/.local/state/tcphop/lab].",
)


def _dir(directory: Path | None) -> Path:
    return directory or lab.default_dir()


def _state(directory: Path) -> lab.LabState:
    state = lab.LabState.load(directory)
    if state is None:
        raise CliError(f"no lab in {directory}; start one with `clusterctl lab up`")
    return state


async def _wait_alive(client: ClusterClient, count: int, timeout_s: float) -> list[str]:
    deadline = time.monotonic() + timeout_s
    alive: list[str] = []
    while len(alive) < count and time.monotonic() < deadline:
        with contextlib.suppress(Unavailable):  # the daemons are still starting
            alive = sorted(n.node_id for n in await client.list_nodes() if n.alive)
        await asyncio.sleep(0.1)
    return alive


@click.group("lab")
def lab_group() -> None:
    """A local multi-node cluster with an embedded etcd."""


@lab_group.command("up")
@click.option("--nodes", default=3, show_default=True, type=int, help="Number of nodes.")
@click.option(
    "--xdp-mode",
    default="native",
    show_default=True,
    type=click.Choice(["native", "generic"]),
    help="How every node attaches the datapath to its veth.",
)
@dir_option
@pass_ctx
def up(ctx: Context, nodes: int, xdp_mode: str, directory: Path | None) -> None:
    """Build the lab in network namespaces: client, router, NODES nodes over two or more
    subnets, etcd, tcphopd (XDP) and the HTTP test service on every node; n1 is designated
    primary, n2 backup."""
    where = _dir(directory)
    try:
        state = lab.up(where, nodes, xdp_mode)
    except lab.LabError as e:
        raise CliError(str(e)) from None

    async def settle(client: ClusterClient) -> list[str]:
        alive = await _wait_alive(client, nodes, 20.0)
        for node_id, role in (("n1", Role.PRIMARY), ("n2", Role.BACKUP))[:nodes]:
            await client.designate(node_id, role)
        await _leader(client, None, want="n1")
        return alive

    alive = Context(",".join(state.endpoints), ctx.timeout_s, ctx.debug).run(settle)
    if len(alive) < nodes:
        raise CliError(
            f"only {len(alive)} of {nodes} nodes registered within 20 s; see {where / 'logs'}"
        )
    assert state.etcd is not None
    net = state.lab
    click.echo(
        f"lab up in {where}: etcd {state.etcd.endpoint}, {nodes} nodes ({xdp_mode} XDP), "
        f"VIP {state.vip}"
    )
    click.echo(
        table(
            [
                [n.name, n.pid, n.endpoint, f"{net.net}.{net.subnet(i)}.0/24", net.node_ns(i)]
                for i, n in enumerate(state.nodes, 1)
            ],
            ("NODE", "PID", "ENDPOINT", "SUBNET", "NAMESPACE"),
        )
    )
    click.echo(
        f"\nclient namespace {net.ns('c')} ({net.client_ip}); router {net.ns('r')}.\n"
        f"Try: ip netns exec {net.ns('c')} curl http://{state.vip}/ (after `lab demo`, or "
        "`clusterctl service apply` a service on the VIP).\n"
        f"clusterctl finds this lab by itself; elsewhere use\n"
        f"  export TCPHOP_ENDPOINT={','.join(state.endpoints)}"
    )


@lab_group.command("status")
@dir_option
@pass_ctx
def status(ctx: Context, directory: Path | None) -> None:
    """Show the lab's processes and the cluster's view of its nodes."""
    where = _dir(directory)
    state = _state(where)
    procs = state.processes
    click.echo(
        table(
            [[p.name, p.pid, p.endpoint, "running" if p.running() else "stopped"] for p in procs],
            ("PROCESS", "PID", "ENDPOINT", "STATE"),
        )
    )
    if state.etcd and state.etcd.running() and any(n.running() for n in state.nodes):
        nodes = Context(",".join(state.endpoints), ctx.timeout_s, ctx.debug).run(
            lambda c: c.list_nodes()
        )
        click.echo("\n" + table(node_rows(nodes), NODE_HEADER))


@lab_group.command("down")
@dir_option
def down(directory: Path | None) -> None:
    """Stop exactly what `lab up` started and remove its files."""
    where = _dir(directory)
    state = lab.down(where)
    if state is None:
        click.echo(f"no lab in {where}")
        return
    click.echo(
        f"lab down: stopped {len(state.processes)} processes, deleted {len(state.created)} "
        f"namespaces and links, removed {where}"
    )


@lab_group.command("demo")
@dir_option
@pass_ctx
def demo(ctx: Context, directory: Path | None) -> None:
    """Send real traffic through the lab's VIP: shares per server, direct return, a planned
    handover and a leader kill under load, a restart."""
    where = _dir(directory)
    state = _state(where)
    spec = lab.sample_service(state)

    async def run(client: ClusterClient) -> None:
        start = (await client.status()).revision + 1
        result = await client.apply_service(spec)
        click.echo(
            f"== service/{spec.name} {result.result}: {spec.vip}:{spec.port} {spec.mode}, "
            f"{spec.policy} (kernel Maglev weights from load), every node"
        )
        await _wait_eligible(client, spec.name, len(state.nodes))
        click.echo(f"\n== {DEMO_REQUESTS} requests, each on a new connection, from the client")
        served = await asyncio.to_thread(lab.served_by, state, DEMO_REQUESTS)
        counts = Counter(served)
        net = state.lab
        click.echo(
            table(
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
        )
        leader = await _leader(client, None)
        await _direct_return(client, state, leader)
        await _l7(client, state)
        target = "n2" if leader != "n2" else "n1"
        click.echo(f"\n== planned handover: designating {target} primary while {leader} leads,")
        click.echo(f"   during a {DOWNLOAD_MB} MB download through the VIP (rate-limited)")
        download = _start_download(state)
        await asyncio.sleep(1.0)
        t0 = time.monotonic()
        await client.designate(target, Role.PRIMARY)
        await _leader(client, None, want=target)
        click.echo(f"{target} leads after {time.monotonic() - t0:.3f} s")
        click.echo(f"download: {await _finish_download(download)}")
        victim = next(n for n in state.nodes if n.name == target)
        await asyncio.sleep(1)  # steady state: the backup has seen the new leader's API up
        click.echo(f"\n== killing the leader {victim.name} (SIGKILL, pid {victim.pid}) during a")
        click.echo(f"   {DOWNLOAD_MB} MB download")
        download = _start_download(state)
        await asyncio.sleep(1.0)
        t0 = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        new = await _leader(client, victim.name)
        click.echo(f"{new} leads after {time.monotonic() - t0:.3f} s")
        click.echo(f"download: {await _finish_download(download)}")
        while (await client.get_node(victim.name)).alive:
            await asyncio.sleep(0.05)
        click.echo(
            f"{victim.name}'s registration expired {time.monotonic() - t0:.2f} s after the kill"
        )
        i = state.nodes.index(victim)
        state.nodes[i] = lab.start_node(state, i + 1)
        state.save()
        t0 = time.monotonic()
        while not (await client.get_node(victim.name)).alive:
            await asyncio.sleep(0.05)
        click.echo(
            f"{victim.name} restarted (pid {state.nodes[i].pid}) and rejoined in "
            f"{time.monotonic() - t0:.2f} s"
        )
        await _leader(client, None, want=victim.name)  # the designated primary takes over again
        served = await asyncio.to_thread(lab.served_by, state, 60)
        click.echo(f"60 more requests after the restart: {dict(sorted(Counter(served).items()))}")
        click.echo(f"\n== events since revision {start}")
        await _print_events(client, start)
        st = await client.status()
        click.echo("\n== status\n" + status_text(st))
        click.echo(table(node_rows(st.nodes), NODE_HEADER))

    Context(",".join(state.endpoints), ctx.timeout_s, ctx.debug).run(run)


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
    raise CliError(f"not every server passed {service}'s health check within 20 s")


def _served_by(headers: str) -> str:
    """The X-Served-By header in curl's dumped response headers ("" when absent)."""
    return next(
        (line.split(":", 1)[1].strip() for line in headers.splitlines()
         if line.lower().startswith("x-served-by:")),
        "",
    )  # fmt: skip


async def _direct_return(client: ClusterClient, state: lab.LabState, leader: str) -> None:
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
        raise CliError(f"the download through the VIP failed: {done.stderr.strip()}")
    after_dp, after_link = await client.datapath(leader), net.tx_bytes(net.port_to(index[leader]))
    server, received = done.stdout.split()
    got = int(received)

    def delta(name: str) -> int:
        return after_dp.stats.get(name, 0) - before_dp.stats.get(name, 0)

    where = f"{net.net}.{net.subnet(index[server])}.0/24"
    click.echo(f"\n== direct return: a {DOWNLOAD_MB} MB download through the VIP")
    click.echo(
        f"served by {server} ({where}): {got} bytes; the scheduler is "
        f"{leader} ({net.net}.{net.subnet(index[leader])}.0/24)"
    )
    click.echo(
        f"router -> {leader} link during the download: "
        f"{(after_link - before_link) / 2**20:.2f} MB against {got / 2**20:.0f} MB of response "
        "(the client's ACKs only)"
    )
    click.echo(
        f"{leader}'s XDP counters: encapsulated {delta('encapsulated')}, response packets "
        f"(vip_reply) {delta('vip_reply')}, served locally {delta('local')}, "
        f"dropped {sum(delta(k) for k in DROPS)}"
    )


DROPS = ("no_backend", "vip_fragment", "encap_failed", "untrusted")


async def _l7(client: ClusterClient, state: lab.LabState) -> None:
    spec = lab.sample_l7_service(state)
    await client.apply_service(spec)
    rules = "; ".join(f"{r.name} -> {', '.join(r.pool.nodes)}" for r in spec.rules)
    click.echo(
        f"\n== L7: service/{spec.name} on {spec.vip}:{spec.port} ({rules}; else {spec.policy})"
    )
    deadline = time.monotonic() + 20
    while len((await client.datapath()).rings.get(spec.name, {})) < len(state.nodes):
        if time.monotonic() > deadline:
            raise CliError(f"not every server passed {spec.name}'s health check within 20 s")
        await asyncio.sleep(0.2)
    before = (await client.datapath()).hop_stats
    url = f"http://{spec.vip}:{spec.port}"
    cases: list[tuple[str, str, tuple[str, ...]]] = [
        ("GET /static/app.js", "/static/app.js", ())
    ] * 2
    if len(spec.rules) > 1:
        cases.append(("GET / with X-Tenant: blue", "/", ("-H", "X-Tenant: blue")))
    cases += [("GET /", "/", ())] * 4
    cases += [("GET / with Cookie: session=42", "/", ("-H", "Cookie: session=42"))] * 3
    for label, path, extra in cases:
        done = await asyncio.to_thread(
            lab.curl, state, "-sD", "-", "-o", "/dev/null", *extra, url + path
        )
        served = _served_by(done.stdout) or f"failed: {done.stderr.strip()}"
        click.echo(f"{label:<32} -> {served}")
    view = await client.datapath()
    hopped = view.hop_stats.get("hops_done", 0) - before.get("hops_done", 0)
    local = view.hop_stats.get("served_locally", 0) - before.get("served_locally", 0)
    click.echo(
        f"connections hopped with TCP_REPAIR: {hopped}, served by the scheduler itself: {local}; "
        f"hop latency p50 {view.hop_p50_ms:.2f} ms"
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


async def _finish_download(proc: subprocess.Popen[str]) -> str:
    out, err = await asyncio.to_thread(proc.communicate)
    if proc.returncode != 0:
        return f"FAILED: {err.strip()}"
    size, _, server = out.partition(" ")
    ok = int(size) == DOWNLOAD_MB * 2**20
    return f"{int(size)} bytes from {server} ({'intact' if ok else 'SHORT'})"


async def _leader(client: ClusterClient, not_node: str | None, want: str | None = None) -> str:
    """Wait (up to 10 s) for a leader other than not_node (and equal to want, if given)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(Unavailable):
            st = await client.status()
            if st.leader and st.leader.node_id != not_node and want in (None, st.leader.node_id):
                return st.leader.node_id
        await asyncio.sleep(0.01)
    raise CliError("no leader was elected within 10 s; see the lab's logs")


async def _print_events(client: ClusterClient, start: int) -> None:
    head = (await client.status()).revision
    event: ClusterEvent
    try:
        async with asyncio.timeout(5):
            async for event in client.watch_events(start):
                click.echo(
                    f"{event.revision:>6}  {event.type:<20} {event.subject:<8} "
                    f"{describe(event)}".rstrip()
                )
                if event.revision >= head:
                    break
    except TimeoutError:
        pass  # the newest revision was not an event of ours
