"""`-w/--watch`: show a view, then redraw it whenever it changes, until Ctrl-C (exit 0).

One client for the whole watch; the view is fetched every --interval seconds and redrawn only
when its text changed. On a terminal the screen is cleared before each redraw; into a pipe each
new version follows a `--- HH:MM:SS` line, so a log of the changes can be kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from cli.context import Context
from cluster.sdk import ClusterClient

_T = TypeVar("_T")
CLEAR = "\033[H\033[2J"


def watch_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--interval",
        default=1.0,
        show_default=True,
        type=click.FloatRange(0.1, 3600),
        help="Seconds between looks, with --watch.",
    )(f)
    return click.option(
        "-w", "--watch", is_flag=True, help="Redraw whenever it changes; Ctrl-C to stop."
    )(f)


def show(
    ctx: Context,
    fetch: Callable[[ClusterClient], Awaitable[_T]],
    render: Callable[[_T], str],
    watch: bool = False,
    interval: float = 1.0,
) -> None:
    """Print render(fetch()) once, or for ever with `watch`."""
    if not watch:
        click.echo(render(ctx.run(fetch)))
        return
    tty = sys.stdout.isatty()

    async def loop(client: ClusterClient) -> None:
        shown = None
        while True:
            text = render(await fetch(client))
            if text != shown:
                stamp = time.strftime("%H:%M:%S")
                click.echo(f"{CLEAR}every {interval:g} s, {stamp}\n{text}" if tty else
                           f"--- {stamp}\n{text}")  # fmt: skip
                shown = text
            await asyncio.sleep(interval)

    with contextlib.suppress(KeyboardInterrupt):
        ctx.run(loop)
