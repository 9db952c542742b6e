"""Shell completion: `clusterctl completion bash|zsh|fish` prints the script, and node and
service arguments complete from the cluster itself (one short call; nothing on failure).

    bash:  eval "$(clusterctl completion bash)"   (or save it under /etc/bash_completion.d/)
    zsh:   eval "$(clusterctl completion zsh)"
    fish:  clusterctl completion fish > ~/.config/fish/completions/clusterctl.fish
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

import click
from click.shell_completion import CompletionItem, get_completion_class

from cli.context import Context
from cluster.sdk import ClusterClient

COMPLETION_TIMEOUT_S = 1.0
SHELLS = ("bash", "zsh", "fish")


def _names(
    ctx: click.Context, fetch: Callable[[ClusterClient], Awaitable[Iterable[str]]]
) -> list[str]:
    """Names from the cluster, asked with the options given so far (or their environment
    variables, or the running lab); [] when it cannot be asked."""
    p = ctx.find_root().params
    call = Context(
        p.get("endpoint"),
        COMPLETION_TIMEOUT_S,
        False,
        (p.get("tls_ca"), p.get("tls_cert"), p.get("tls_key")),
        bool(p.get("insecure")),
    )
    try:
        return sorted(call.run(fetch))
    except (click.ClickException, OSError):
        return []


def nodes(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    async def fetch(c: ClusterClient) -> list[str]:
        return [n.node_id for n in await c.list_nodes()]

    return [CompletionItem(n) for n in _names(ctx, fetch) if n.startswith(incomplete)]


def services(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    async def fetch(c: ClusterClient) -> list[str]:
        return [s.name for s in await c.list_services()]

    return [CompletionItem(n) for n in _names(ctx, fetch) if n.startswith(incomplete)]


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish). Load it with
    `eval "$(clusterctl completion bash)"`; node and service names complete from the cluster."""
    root = ctx.find_root()
    cls = get_completion_class(shell)
    assert cls is not None  # SHELLS are the shells click supports
    script = cls(root.command, {}, "clusterctl", "_CLUSTERCTL_COMPLETE").source()
    click.echo(script)
