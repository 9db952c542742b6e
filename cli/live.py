"""`-w/--watch`: show a view, then redraw it whenever it changes, until Ctrl-C (exit 0).

One client for the whole watch; the view is fetched every --interval seconds and redrawn only
when its text changed. On a terminal the screen is cleared before each redraw; into a pipe each
new version follows a `--- HH:MM:SS` line, so a log of the changes can be kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
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
        # Ctrl-C (or SIGTERM) ends the watch between looks or during one, and the client
        # closes normally: no KeyboardInterrupt through the gRPC machinery.
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        shown = None
        while not stop.is_set():
            look = asyncio.ensure_future(fetch(client))
            waiter = asyncio.ensure_future(stop.wait())
            await asyncio.wait({look, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if not look.done():
                look.cancel()
                return
            text = render(look.result())
            if text != shown:
                stamp = time.strftime("%H:%M:%S")
                click.echo(f"{CLEAR}every {interval:g} s, {stamp}\n{text}" if tty else
                           f"--- {stamp}\n{text}")  # fmt: skip
                shown = text
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    with contextlib.suppress(KeyboardInterrupt):  # a Ctrl-C before the loop runs
        ctx.run(loop)
