"""clusterctl service apply | list | get | delete."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click
import yaml

from cli import completion as complete
from cli.context import CliError, Context, pass_ctx
from cli.live import show, watch_options
from cli.output import dump, output_option, render, table
from cluster.model import Mode, ServiceSpec
from cluster.sdk import (
    ClusterClient,
    SdkError,
    ValidationError,
    service_to_doc,
    services_from_file_doc,
)

HEADER = ("NAME", "VIP", "PORT", "MODE", "POLICY", "POOL", "PERSISTENCE", "CHECK", "RULES")


def load_specs(path: str) -> list[ServiceSpec]:
    """Read and validate a YAML or JSON file (or '-' for stdin) of one or more services."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]  # JSON is YAML too
    except yaml.YAMLError as e:
        raise CliError(f"{path}: not valid YAML or JSON: {e}".replace("\n", " ")) from None
    if not docs:
        raise CliError(f"{path}: no service in the file")
    try:
        return services_from_file_doc(docs[0] if len(docs) == 1 else docs)
    except ValidationError as e:
        raise CliError(f"{path}: invalid: " + "; ".join(e.problems)) from None


def rows(specs: list[ServiceSpec]) -> list[list[object]]:
    return [
        [
            s.name,
            s.vip,
            s.port,
            s.mode,
            s.policy,
            "all" if s.pool.all else ",".join(s.pool.nodes),
            s.persistence,
            s.health_check.type,
            len(s.rules),
        ]
        for s in specs
    ]


@click.group()
def service() -> None:
    """Services: a VIP:port, its pool, policy and rules."""


@service.command("apply")
@click.option("-f", "--file", "path", required=True, help="YAML or JSON file, '-' for stdin.")
@output_option
@pass_ctx
def apply(ctx: Context, path: str, fmt: str) -> None:
    """Create or update the services in a file, in one transaction: all or nothing."""
    specs = load_specs(path)
    results = ctx.run(lambda c: c.apply_services(specs))
    for result in results:
        for warning in result.warnings:
            click.echo(f"warning: {result.service.name}: {warning}", err=True)
    done = [
        {"service": r.service.name, "result": r.result, "warnings": list(r.warnings)}
        for r in results
    ]
    if fmt != "table":
        click.echo(dump(done, fmt))
        return
    for r in done:
        click.echo(f"service/{r['service']} {r['result']}")


@service.command("list")
@output_option
@watch_options
@pass_ctx
def list_(ctx: Context, fmt: str, watch: bool, interval: float) -> None:
    """List services."""
    show(
        ctx,
        lambda c: c.list_services(),
        lambda specs: render([service_to_doc(s) for s in specs], fmt, rows(specs), HEADER),
        watch,
        interval,
    )


@service.command("get")
@click.argument("name", shell_complete=complete.services)
@output_option
@pass_ctx
def get(ctx: Context, name: str, fmt: str) -> None:
    """Show one service (-o yaml gives a file `service apply` takes back); in table form, with
    the leader's rule hit counts for an l7 service."""
    spec = ctx.run(lambda c: c.get_service(name))
    if fmt != "table":
        click.echo(dump(service_to_doc(spec), fmt))
        return
    click.echo(dump(service_to_doc(spec), "yaml"))
    if spec.mode == Mode.L7:
        hits = ctx.run(_rule_hits)
        rows = [[r.name, hits.get(f"{name}/{r.name}", 0)] for r in spec.rules]
        rows.append(["(default pool)", hits.get(f"{name}/-", 0)])
        click.echo("\n" + table(rows, ("RULE", "HITS (on the leader, since it leads)")))


async def _rule_hits(c: ClusterClient) -> dict[str, int]:
    with contextlib.suppress(SdkError):
        return (await c.datapath()).rule_hits
    return {}


@service.command("delete")
@click.argument("name", shell_complete=complete.services)
@output_option
@pass_ctx
def delete(ctx: Context, name: str, fmt: str) -> None:
    """Delete a service."""
    ctx.run(lambda c: c.delete_service(name))
    if fmt != "table":
        click.echo(dump({"service": name, "result": "deleted"}, fmt))
        return
    click.echo(f"service/{name} deleted")
