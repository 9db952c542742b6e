"""clusterctl: the command line of a tcphop cluster. It speaks only through the SDK.

Exit codes: 0 success; 1 a user error (bad input, unknown node or service), with a one-line
message; 2 the cluster cannot be reached. A traceback only with --debug.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import click

from cli import lab
from cluster.sdk import ClusterClient, SdkError, Unavailable

_T = TypeVar("_T")
EXIT_USER = 1
EXIT_UNREACHABLE = 2
DEFAULT_ENDPOINT = "127.0.0.1:7700"


class CliError(click.ClickException):
    exit_code = EXIT_USER


class Unreachable(click.ClickException):
    exit_code = EXIT_UNREACHABLE


@dataclass
class Context:
    endpoint: str | None
    timeout_s: float
    debug: bool

    def endpoints(self) -> list[str]:
        """--endpoint / TCPHOP_ENDPOINT, else the running lab's nodes, else the default."""
        if self.endpoint:
            return [e.strip() for e in self.endpoint.split(",") if e.strip()]
        return lab.running_endpoints(lab.default_dir()) or [DEFAULT_ENDPOINT]

    def run(self, call: Callable[[ClusterClient], Awaitable[_T]]) -> _T:
        """Run one SDK call; turn SDK errors into clusterctl's exit codes."""

        async def go() -> _T:
            async with ClusterClient(self.endpoints(), timeout_s=self.timeout_s) as client:
                return await call(client)

        try:
            return asyncio.run(go())
        except Unavailable as e:
            if self.debug:
                raise
            raise Unreachable(f"cannot reach the cluster: {e}") from None
        except SdkError as e:
            if self.debug:
                raise
            raise CliError(str(e)) from None


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--endpoint",
    envvar="TCPHOP_ENDPOINT",
    default=None,
    help="tcphopd API endpoint(s), comma-separated host:port "
    "[env TCPHOP_ENDPOINT; default: the running lab, else 127.0.0.1:7700].",
)
@click.option(
    "--timeout", "timeout_s", default=5.0, show_default=True, type=float, help="Seconds per call."
)
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def cli(ctx: click.Context, endpoint: str | None, timeout_s: float, debug: bool) -> None:
    """Operate a tcphop cluster."""
    ctx.obj = Context(endpoint, timeout_s, debug)


def _register() -> None:
    from cli.commands import cluster, lab_cmd, service

    for command in (*cluster.COMMANDS, service.service, lab_cmd.lab_group):
        cli.add_command(command)


_register()


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(EXIT_UNREACHABLE if isinstance(e, Unreachable) else EXIT_USER)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        if debug or os.environ.get("TCPHOP_DEBUG"):
            raise
        click.echo(f"Error: {type(e).__name__}: {e} (run with --debug for a traceback)", err=True)
        sys.exit(EXIT_USER)


if __name__ == "__main__":
    main()
