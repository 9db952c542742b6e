"""clusterctl datapath stats | flows: a node's datapath, asked of the node itself."""

from __future__ import annotations

import click

from cli.context import Context, pass_ctx
from cli.output import emit, output_option, table


@click.group("datapath")
def datapath() -> None:
    """A node's datapath: counters and the flow table."""


@datapath.command("stats")
@click.argument("node", required=False)
@output_option
@pass_ctx
def stats(ctx: Context, node: str | None, fmt: str) -> None:
    """Counters by reason of NODE's datapath (default: the leader's)."""
    view = ctx.run(lambda c: c.datapath(node))
    if fmt == "table":
        role = "scheduler + receiver" if view.scheduling else "receiver"
        click.echo(
            f"node {view.node_id}: {view.kind} on {view.interface or '-'} ({view.mode or '-'}), "
            f"address {view.address or '-'}, {role}"
        )
        click.echo(f"vips on lo: {', '.join(view.vips) or '-'}")
        click.echo(f"trusted schedulers: {', '.join(view.trusted) or '-'}")
        click.echo(
            f"event loop lag: {view.loop_lag_ms:.1f} ms now, {view.loop_lag_max_ms:.1f} ms max "
            f"(10 s); longest rule match {view.rule_match_max_ms:.2f} ms"
        )
        for service, weights in sorted(view.rings.items()):
            shares = ", ".join(f"{n} {w}" for n, w in sorted(weights.items())) or "no server"
            click.echo(f"ring {service}: {shares}")
        click.echo()
    emit(view, fmt, sorted(view.stats.items()), ("COUNTER", "PACKETS"))
    if fmt == "table" and (view.handoff_stats or view.rule_hits):
        click.echo(
            f"\nL7 handoff (latency request read -> server committed: "
            f"p50 {view.handoff_p50_ms:.2f} ms, "
            f"p99 {view.handoff_p99_ms:.2f} ms)"
        )
        click.echo(table(sorted(view.handoff_stats.items()), ("OUTCOME", "CONNECTIONS")))
        click.echo("\n" + table(sorted(view.rule_hits.items()), ("SERVICE/RULE", "REQUESTS")))


@datapath.command("flows")
@click.argument("node", required=False)
@click.option("--limit", default=1000, show_default=True, type=int, help="At most this many.")
@output_option
@pass_ctx
def flows(ctx: Context, node: str | None, limit: int, fmt: str) -> None:
    """NODE's flow table (default: the leader's): which server each connection is pinned to."""
    view = ctx.run(lambda c: c.flows(node, limit))
    rows = [[f"{f.client}:{f.client_port}", f"{f.vip}:{f.port}", f.node] for f in view.flows]
    emit(view, fmt, rows, ("CLIENT", "VIP", "SERVER"))
    if fmt == "table" and view.truncated:
        click.echo(f"(first {limit} flows; raise --limit for more)")
