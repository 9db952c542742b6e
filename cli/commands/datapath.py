"""clusterctl datapath stats | flows: a node's datapath, asked of the node itself."""

from __future__ import annotations

import click

from cli import completion as complete
from cli.context import Context, pass_ctx
from cli.live import show, watch_options
from cli.output import emit, output_option, render, table
from cluster.sdk import DatapathView


@click.group("datapath")
def datapath() -> None:
    """A node's datapath: counters and the flow table."""


@datapath.command("stats")
@click.argument("node", required=False, shell_complete=complete.nodes)
@output_option
@watch_options
@pass_ctx
def stats(ctx: Context, node: str | None, fmt: str, watch: bool, interval: float) -> None:
    """Counters by reason of NODE's datapath (default: the leader's)."""
    show(ctx, lambda c: c.datapath(node), lambda v: stats_text(v, fmt), watch, interval)


def stats_text(view: DatapathView, fmt: str) -> str:
    counters = render(view, fmt, sorted(view.stats.items()), ("COUNTER", "PACKETS"))
    if fmt != "table":
        return counters
    role = "scheduler + receiver" if view.scheduling else "receiver"
    lines = [
        f"node {view.node_id}: {view.kind} on {view.interface or '-'} ({view.mode or '-'}), "
        f"address {view.address or '-'}, {role}",
        f"vips on lo: {', '.join(view.vips) or '-'}",
        f"trusted schedulers: {', '.join(view.trusted) or '-'}",
        f"event loop lag: {view.loop_lag_ms:.1f} ms now, {view.loop_lag_max_ms:.1f} ms max "
        f"(10 s); longest rule match {view.rule_match_max_ms:.2f} ms",
    ]
    for service, weights in sorted(view.rings.items()):
        shares = ", ".join(f"{n} {w}" for n, w in sorted(weights.items())) or "no server"
        lines.append(f"ring {service}: {shares}")
    lines += ["", counters]
    if view.handoff_stats or view.rule_hits:
        lines += [
            f"\nL7 handoff (latency request read -> server committed: "
            f"p50 {view.handoff_p50_ms:.2f} ms, p99 {view.handoff_p99_ms:.2f} ms)",
            table(sorted(view.handoff_stats.items()), ("OUTCOME", "CONNECTIONS")),
            "\n" + table(sorted(view.rule_hits.items()), ("SERVICE/RULE", "REQUESTS")),
        ]
    return "\n".join(lines)


@datapath.command("flows")
@click.argument("node", required=False, shell_complete=complete.nodes)
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
