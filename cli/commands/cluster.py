"""clusterctl nodes | designate | server | status | events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import click

from cli import completion as complete
from cli.context import CliError, Context, pass_ctx
from cli.live import show, watch_options
from cli.output import FORMATS, dump, emit, output_option, plain, render, table
from cluster.model import (
    ClusterEvent,
    ClusterStatus,
    Designation,
    EventType,
    LoadReport,
    Node,
    Role,
    Serving,
)
from cluster.sdk import ClusterClient

NODE_HEADER = (
    "NODE",
    "ALIVE",
    "ENDPOINT",
    "ROLE",
    "SERVING",
    "WEIGHT",
    "CPU",
    "CONNS",
    "CHECKS",
    "HOST",
    "PID",
    "UP",
)


def _uptime(node: Node) -> str:
    if node.registration is None:
        return ""
    seconds = max(0, int(time.time() - node.registration.started_at_unix_s))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else (f"{seconds // 60}m{seconds % 60:02d}s")
    )


def health_cells(h: LoadReport | None) -> list[object]:
    """CPU, connections and checks (up/total) from an agent's report."""
    if h is None:
        return ["", "", ""]
    up = sum(1 for s in h.services if s.up)
    return [f"{h.cpu:.0%}", h.connections, f"{up}/{len(h.services)} up"]


def node_rows(nodes: list[Node] | tuple[Node, ...]) -> list[list[object]]:
    rows: list[list[object]] = []
    for n in nodes:
        r, d = n.registration, n.designation
        rows.append(
            [
                n.node_id,
                "yes" if n.alive else "no",
                r.endpoint if r else "",
                d.role,
                d.serving,
                d.weight,
                *health_cells(n.health),
                r.hostname if r else "",
                r.pid if r else "",
                _uptime(n),
            ]
        )
    return rows


@click.group()
def nodes() -> None:
    """Nodes of the cluster."""


@nodes.command("list")
@output_option
@watch_options
@pass_ctx
def nodes_list(ctx: Context, fmt: str, watch: bool, interval: float) -> None:
    """List every node that ever registered, alive or not."""
    show(
        ctx,
        lambda c: c.list_nodes(),
        lambda nodes: render(nodes, fmt, node_rows(nodes), NODE_HEADER),
        watch,
        interval,
    )


@nodes.command("get")
@click.argument("node_id", shell_complete=complete.nodes)
@output_option
@pass_ctx
def nodes_get(ctx: Context, node_id: str, fmt: str) -> None:
    """Show one node."""
    node = ctx.run(lambda c: c.get_node(node_id))
    emit(node, fmt, node_rows([node]), NODE_HEADER)


@click.command()
@click.argument("node_id", shell_complete=complete.nodes)
@click.option(
    "--role", required=True, type=click.Choice([str(r) for r in Role]), help="Scheduler role."
)
@click.option("--force", is_flag=True, help="Allow a node that has never registered.")
@output_option
@pass_ctx
def designate(ctx: Context, node_id: str, role: str, force: bool, fmt: str) -> None:
    """Set NODE_ID's scheduler role (primary, backup or none)."""
    designation, warnings = ctx.run(lambda c: c.designate(node_id, role, force))
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if fmt != "table":
        click.echo(dump({"designation": designation, "warnings": warnings}, fmt))
        return
    click.echo(f"{node_id}: role {designation.role}")


@click.group()
def server() -> None:
    """Serving state of content servers."""


def _serving_command(name: str, state: Serving, doc: str) -> None:
    @click.argument("node_id", shell_complete=complete.nodes)
    @click.option("--weight", type=int, default=None, help="Also set the weight (0-10000).")
    @output_option
    @pass_ctx
    def command(ctx: Context, node_id: str, weight: int | None, fmt: str) -> None:
        d = ctx.run(lambda c: c.set_serving(node_id, state, weight))
        _serving_result(d, fmt)

    command.__doc__ = doc
    server.command(name)(command)


_serving_command("enable", Serving.ENABLED, "Let NODE_ID take new connections.")
_serving_command("disable", Serving.DISABLED, "Give NODE_ID no new connections (maintenance).")


@server.command("drain")
@click.argument("node_id", shell_complete=complete.nodes)
@click.option("--weight", type=int, default=None, help="Also set the weight (0-10000).")
@click.option("--wait", is_flag=True, help="Return when its connections reach 0.")
@click.option("--wait-timeout", default=300.0, show_default=True, help="Seconds, with --wait.")
@output_option
@pass_ctx
def drain(
    ctx: Context, node_id: str, weight: int | None, wait: bool, wait_timeout: float, fmt: str
) -> None:
    """Give NODE_ID no new connections; open ones finish."""
    d = ctx.run(lambda c: c.set_serving(node_id, Serving.DRAINING, weight))
    _serving_result(d, fmt)
    if not wait:
        return

    async def drained(client: ClusterClient) -> int:
        deadline = time.monotonic() + wait_timeout
        while True:
            health = (await client.get_node(node_id)).health
            left = health.connections if health is not None else 0
            if left == 0 or time.monotonic() > deadline:
                return left
            await asyncio.sleep(0.5)

    left = ctx.run(drained)
    if left:
        raise CliError(f"{node_id} still has {left} connections after {wait_timeout:g} s")
    if fmt == "table":
        click.echo(f"{node_id}: drained (0 connections)")


def _serving_result(d: Designation, fmt: str) -> None:
    if fmt != "table":
        click.echo(dump(d, fmt))
        return
    click.echo(f"{d.node_id}: serving {d.serving}, weight {d.weight}")


@click.command()
@output_option
@watch_options
@pass_ctx
def status(ctx: Context, fmt: str, watch: bool, interval: float) -> None:
    """Cluster overview."""

    def text(st: ClusterStatus) -> str:
        if fmt != "table":
            return dump(st, fmt)
        return status_text(st) + "\n" + table(node_rows(st.nodes), NODE_HEADER)

    show(ctx, lambda c: c.status(), text, watch, interval)


def _ago(unix_s: float) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(unix_s))
    return f"{stamp}, {max(0.0, time.time() - unix_s):.1f} s ago"


def status_text(st: ClusterStatus) -> str:
    alive = sum(1 for n in st.nodes if n.alive)
    lines = [
        f"answered by:  {st.answered_by}",
        f"etcd:         {', '.join(st.etcd_endpoints)} (revision {st.revision})",
    ]
    if st.leader is None:
        lines.append("leader:       none")
    else:
        lead = st.leader
        lines.append(
            f"leader:       {lead.node_id} (term {lead.term}, since {_ago(lead.since_unix_s)})"
        )
        if lead.note:
            lines.append(f"              {lead.note}")
    lines.append(f"candidates:   {', '.join(st.candidates) or 'none'}")
    owners = ", ".join(f"{o.vip} on {o.node_id}" for o in st.vip_owners)
    lines.append(f"VIPs:         {owners or 'none held'}")
    if st.handover is not None:
        h = st.handover
        lines.append(
            f"handover:     {h.from_node} -> {h.to_node} (term {h.term}) {h.state}, "
            f"{_ago(h.at_unix_s)}"
        )
    lines.append(f"nodes:        {alive} alive of {len(st.nodes)}")
    lines.append(f"services:     {st.services}")
    if st.malformed:
        shown = ", ".join(st.malformed[:10]) + (" …" if len(st.malformed) > 10 else "")
        lines.append(
            f"malformed:    {len(st.malformed)} stored value(s) skipped: {shown} (written by "
            "hand or a bug; re-apply them or delete the keys)"
        )
    return "\n".join(lines) + "\n"


def describe(event: ClusterEvent) -> str:
    if event.type == EventType.NODE_JOINED and event.registration:
        return f"endpoint {event.registration.endpoint} pid {event.registration.pid}"
    if event.type == EventType.DESIGNATION_CHANGED and event.designation:
        d = event.designation
        return f"role {d.role}, serving {d.serving}, weight {d.weight}"
    if event.leader is not None:
        return f"term {event.leader.term}, endpoint {event.leader.endpoint}"
    if event.handover is not None:
        h = event.handover
        return f"{h.from_node} -> {h.to_node}, term {h.term}" + (
            f" -> term {h.new_term} led by {h.new_leader}" if h.new_term else ""
        )
    if event.type == EventType.SERVICE_APPLIED and event.service:
        s = event.service
        return f"{s.vip}:{s.port} {s.mode} policy {s.policy}"
    return ""


@click.command()
@click.option(
    "--from-revision",
    default=0,
    show_default=True,
    type=int,
    help="First etcd revision to show (0: from now on).",
)
@click.option("--count", default=0, type=int, help="Exit after this many events (0: never).")
@click.option(
    "-o",
    "--output",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table: one line per event; json: one object per line; yaml: one document each.",
)
@pass_ctx
def events(ctx: Context, from_revision: int, count: int, fmt: str) -> None:
    """Watch cluster events (Ctrl-C to stop)."""

    async def watch(client: ClusterClient) -> None:
        seen = 0
        stream: AsyncIterator[ClusterEvent] = client.watch_events(from_revision)
        async for event in stream:
            if fmt == "json":
                click.echo(json.dumps(plain(event)))
            elif fmt == "yaml":
                click.echo("---\n" + dump(event, "yaml"))
            else:
                click.echo(
                    f"{event.revision:>8}  {event.type:<20} {event.subject:<16} "
                    f"{describe(event)}".rstrip()
                )
            seen += 1
            if count and seen >= count:
                return

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        ctx.run(watch)


COMMANDS = (nodes, designate, server, status, events)
