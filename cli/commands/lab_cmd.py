"""clusterctl lab up | status | down | demo."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import click

from cli import lab
from cli.commands.cluster import NODE_HEADER, describe, node_rows, status_text
from cli.commands.service import load_specs
from cli.context import CliError, Context, pass_ctx
from cli.output import table
from cluster.model import ClusterEvent, Role, Serving
from cluster.sdk import ClusterClient, Unavailable

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "services.yaml"
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
@dir_option
@pass_ctx
def up(ctx: Context, nodes: int, directory: Path | None) -> None:
    """Start etcd and NODES tcphopd processes; n1 is designated primary, n2 backup."""
    where = _dir(directory)
    try:
        state = lab.up(where, nodes)
    except (lab.LabError, RuntimeError, TimeoutError, FileNotFoundError) as e:
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
    click.echo(f"lab up in {where}: etcd {state.etcd.endpoint}, {nodes} nodes")
    click.echo(
        table([[n.name, n.pid, n.endpoint] for n in state.nodes], ("NODE", "PID", "ENDPOINT"))
    )
    click.echo(
        f"\nclusterctl finds this lab by itself; elsewhere use\n"
        f"  export TCPHOP_ENDPOINT={','.join(state.endpoints)}"
    )


@lab_group.command("status")
@dir_option
@pass_ctx
def status(ctx: Context, directory: Path | None) -> None:
    """Show the lab's processes and the cluster's view of its nodes."""
    where = _dir(directory)
    state = _state(where)
    procs = [state.etcd, *state.nodes]
    click.echo(
        table(
            [[p.name, p.pid, p.endpoint, "running" if p.running() else "stopped"] for p in procs],
            ("PROCESS", "PID", "ENDPOINT", "STATE"),
        )
    )
    if state.etcd.running() and any(n.running() for n in state.nodes):
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
    click.echo(f"lab down: stopped {len(state.nodes)} nodes and etcd, removed {where}")


@lab_group.command("demo")
@dir_option
@pass_ctx
def demo(ctx: Context, directory: Path | None) -> None:
    """Show the running lab at work: services, serving states, a node failure."""
    where = _dir(directory)
    state = _state(where)
    specs = load_specs(str(SAMPLES))

    async def run(client: ClusterClient) -> None:
        start = (await client.status()).revision + 1
        click.echo(f"== applying {len(specs)} sample services from {SAMPLES.name}")
        for spec in specs:
            result = await client.apply_service(spec)
            click.echo(
                f"service/{spec.name} {result.result} ({spec.vip}:{spec.port} "
                f"{spec.mode}, {len(spec.rules)} rules)"
            )
        last = state.nodes[-1].name
        click.echo(f"\n== draining {last}, then enabling it again")
        await client.set_serving(last, Serving.DRAINING)
        await client.set_serving(last, Serving.ENABLED)
        old = await _leader(client, None)
        target = next(n.name for n in state.nodes if n.name != old)
        click.echo(f"\n== planned handover: designating {target} primary while {old} leads")
        t0 = time.monotonic()
        await client.designate(target, Role.PRIMARY)
        await _leader(client, None, want=target)
        click.echo(f"{target} leads after {time.monotonic() - t0:.3f} s")
        victim = next(n for n in state.nodes if n.name == target)
        await asyncio.sleep(1)  # steady state: the backup has seen the new leader's API up
        click.echo(f"\n== killing the leader {victim.name} (SIGKILL, pid {victim.pid})")
        t0 = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        new = await _leader(client, victim.name)
        click.echo(f"{new} leads after {time.monotonic() - t0:.3f} s")
        while (await client.get_node(victim.name)).alive:
            await asyncio.sleep(0.05)
        click.echo(
            f"{victim.name}'s registration expired {time.monotonic() - t0:.2f} s after the kill"
        )
        restarted = lab.start_node(where, victim.name, state.etcd.endpoint)
        state.nodes[state.nodes.index(victim)] = restarted
        state.save()
        t0 = time.monotonic()
        while not (await client.get_node(victim.name)).alive:
            await asyncio.sleep(0.05)
        click.echo(
            f"{victim.name} restarted (pid {restarted.pid}) and rejoined in "
            f"{time.monotonic() - t0:.2f} s"
        )
        await _leader(client, None, want=victim.name)  # the designated primary takes over again
        click.echo(f"\n== events since revision {start}")
        await _print_events(client, start)
        st = await client.status()
        click.echo("\n== status\n" + status_text(st))
        click.echo(table(node_rows(st.nodes), NODE_HEADER))

    Context(",".join(state.endpoints), ctx.timeout_s, ctx.debug).run(run)


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
