"""clusterctl top: the leader's live load table and placement weights."""

from __future__ import annotations

import asyncio
import contextlib
import select
import sys
import termios
import tty

import click

from cli.context import Context, pass_ctx
from cli.output import FORMATS, dump, table
from cluster.sdk import ClusterClient, LoadsView

HEADER = ("NODE", "FRESH", "AGE", "CPU", "LOAD1", "MEM", "CONNS", "CHECKS", "LATENCY")


def render(view: LoadsView) -> str:
    rows = []
    for n in view.loads:
        r = n.report
        up = [s for s in r.services if s.up]
        latency = max((s.latency_ms for s in up), default=0.0)
        rows.append(
            [
                r.node_id,
                "yes" if n.fresh else "no",
                f"{n.age_s:.1f}s",
                f"{r.cpu:.0%}",
                f"{r.load1:.2f}",
                f"{r.memory_used:.0%}",
                r.connections,
                f"{len(up)}/{len(r.services)} up",
                f"{latency:.1f}ms",
            ]
        )
    weights = [
        [service, " ".join(f"{node}={w}" for node, w in sorted(ws.items())) or "-"]
        for service, ws in sorted(view.weights.items())
    ]
    return (
        f"leader {view.leader} (term {view.term})\n\n"
        + table(rows, HEADER)
        + "\n\n"
        + table(weights, ("SERVICE", "KERNEL WEIGHTS (maglev, from load)"))
    )


@click.command()
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="json, yaml: one snapshot.",
)
@click.option("--interval", default=1.0, show_default=True, help="Seconds between refreshes.")
@pass_ctx
def top(ctx: Context, fmt: str, interval: float) -> None:
    """Live per-node load, connections, checks and placement weights (q to quit)."""
    if fmt != "table" or not sys.stdout.isatty() or not sys.stdin.isatty():
        view = ctx.run(lambda c: c.loads())
        click.echo(dump(view, fmt) if fmt != "table" else render(view))
        return

    async def loop(client: ClusterClient) -> None:
        while True:
            text = render(await client.loads())
            click.echo("\033[H\033[2J" + text + "\n\n(q to quit)", nl=False)
            if await asyncio.to_thread(_quit_pressed, interval):
                click.echo()
                return

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        with contextlib.suppress(KeyboardInterrupt):
            ctx.run(loop)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _quit_pressed(wait_s: float) -> bool:
    ready, _, _ = select.select([sys.stdin], [], [], wait_s)
    return bool(ready) and sys.stdin.read(1) in ("q", "Q")
