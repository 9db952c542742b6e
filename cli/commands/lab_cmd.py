"""clusterctl lab up | status | down | demo."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import click

from cli.commands.cluster import NODE_HEADER, describe, node_rows, status_text
from cli.context import CliError, Context, pass_ctx
from cli.output import table
from cluster.model import ClusterEvent, ClusterStatus, Role
from cluster.sdk import ClusterClient
from lab import demo as demo_steps
from lab import etcd as lab_etcd
from lab import lifecycle as lab
from lab.lifecycle import LabError
from lab.state import DEMO_FILE

dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=None,
    help="Lab state directory [env TCPHOP_LAB_DIR; default ~/.local/state/tcphop/lab].",
)


def _lab_context(ctx: Context, state: lab.LabState) -> Context:
    """Calls to the lab's own nodes, with its admin certificate."""
    tls = state.admin_tls()
    paths = (str(tls.ca), str(tls.cert), str(tls.key)) if tls else (None, None, None)
    return Context(",".join(state.endpoints), ctx.timeout_s, ctx.debug, paths, tls is None)


def _dir(directory: Path | None) -> Path:
    return directory or lab.default_dir()


def _state(directory: Path) -> lab.LabState:
    state = lab.LabState.load(directory)
    if state is None:
        raise CliError(f"no lab in {directory}; start one with `clusterctl lab up`")
    return state


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
@click.option(
    "--insecure", is_flag=True, help="No PKI: plaintext etcd, nodes with --insecure (benchmarks)."
)
@click.option(
    "--etcd-members",
    default=1,
    show_default=True,
    type=click.Choice([str(n) for n in lab_etcd.MEMBER_COUNTS]),
    help="1: etcd on the router; 3 or 5: a real etcd cluster, each member in its own namespace.",
)
@dir_option
@pass_ctx
def up(
    ctx: Context,
    nodes: int,
    xdp_mode: str,
    insecure: bool,
    etcd_members: str,
    directory: Path | None,
) -> None:
    """Build the lab in network namespaces: client, router, NODES nodes over two or more
    subnets, etcd, tcphopd (XDP) and the HTTP test service on every node; n1 is designated
    primary, n2 backup."""
    where = _dir(directory)
    started = time.monotonic()

    def progress(line: str) -> None:
        click.echo(f"[{time.monotonic() - started:5.1f} s] {line}", err=True)

    try:
        state = lab.up(
            where, nodes, xdp_mode, not insecure, progress, etcd_members=int(etcd_members)
        )
    except LabError as e:
        raise CliError(str(e)) from None

    async def settle(client: ClusterClient) -> list[str]:
        alive = await demo_steps.wait_alive(client, nodes, 20.0)
        progress(f"{len(alive)} of {nodes} nodes registered: {', '.join(alive) or 'none'}")
        for node_id, role in (("n1", Role.PRIMARY), ("n2", Role.BACKUP))[:nodes]:
            await client.designate(node_id, role)
        leader = await demo_steps.wait_leader(client, None, want="n1")
        progress(f"leader elected: {leader}")
        return alive

    alive = _lab_context(ctx, state).run(settle)
    if len(alive) < nodes:
        raise CliError(
            f"only {len(alive)} of {nodes} nodes registered within 20 s; see {where / 'logs'}"
        )
    _summary(state, where, time.monotonic() - started)


def _summary(state: lab.LabState, where: Path, took_s: float) -> None:
    assert state.etcd is not None
    net = state.lab
    click.echo(
        f"lab up in {where} in {took_s:.1f} s: etcd {state.etcd_url}, "
        f"{state.size} nodes ({state.xdp_mode} XDP), VIP {state.vip}"
    )
    rows = [
        [n.name, n.pid, n.endpoint, n.http, f"{net.net}.{net.subnet(i)}.0/24", net.node_ns(i)]
        for i, n in enumerate(state.nodes, 1)
    ]
    click.echo(table(rows, ("NODE", "PID", "ENDPOINT", "METRICS/HEALTH", "SUBNET", "NAMESPACE")))
    click.echo(
        f"\nclient namespace {net.ns('c')} ({net.client_ip}); router {net.ns('r')}.\n"
        f"Try: ip netns exec {net.ns('c')} curl http://{state.vip}/ (after `lab demo`, or "
        "`clusterctl service apply` a service on the VIP).\n"
        f"clusterctl finds this lab (and its admin certificate) by itself; elsewhere use\n"
        f"  export TCPHOP_ENDPOINT={','.join(state.endpoints)}"
    )
    if (tls := state.admin_tls()) is not None:
        click.echo(
            f"  export TCPHOP_TLS_CA={tls.ca} TCPHOP_TLS_CERT={tls.cert} TCPHOP_TLS_KEY={tls.key}"
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
            [
                [p.name, p.pid, p.endpoint, p.http or "-", "running" if p.running() else "stopped"]
                for p in procs
            ],
            ("PROCESS", "PID", "ENDPOINT", "METRICS/HEALTH", "STATE"),
        )
    )
    if state.etcd and state.etcd.running() and any(n.running() for n in state.nodes):
        nodes = _lab_context(ctx, state).run(lambda c: c.list_nodes())
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

    printer = _Printer()

    async def run(client: ClusterClient) -> None:
        try:
            await demo_steps.run(client, state, printer)
        except LabError as e:
            raise CliError(str(e)) from None
        finally:
            (where / DEMO_FILE).write_text(json.dumps(printer.facts, indent=2))

    _lab_context(ctx, state).run(run)


class _Printer:
    """The demo's report, printed as clusterctl prints everything else; its facts as data."""

    def __init__(self) -> None:
        self.facts: dict[str, object] = {}

    def fact(self, name: str, value: object) -> None:
        self.facts[name] = value

    def line(self, text: str) -> None:
        click.echo(text)

    def table(self, rows: Sequence[Sequence[object]], header: Sequence[str]) -> None:
        click.echo(table([list(r) for r in rows], tuple(header)))

    def status(self, status: ClusterStatus) -> None:
        click.echo(status_text(status))
        click.echo(table(node_rows(status.nodes), NODE_HEADER))

    def event(self, event: ClusterEvent) -> None:
        click.echo(
            f"{event.revision:>6}  {event.type:<20} {event.subject:<8} {describe(event)}".rstrip()
        )
