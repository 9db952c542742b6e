"""clusterctl's call context: endpoints, timeout, and SDK errors -> exit codes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import click

from cluster.sdk import ClusterClient, SdkError, Unavailable
from lab.state import default_dir, running_endpoints

_T = TypeVar("_T")
EXIT_USER = 1  # the cluster refused: invalid input, unknown node or service
EXIT_USAGE = 2  # called wrong: a missing or unknown option or argument (click, POSIX)
EXIT_UNREACHABLE = 3  # no endpoint answered
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
        return running_endpoints(default_dir()) or [DEFAULT_ENDPOINT]

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
