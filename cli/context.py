"""clusterctl's call context: endpoints, timeout, and SDK errors -> exit codes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import click

from cluster.sdk import ClusterClient, SdkError, TlsFiles, Unavailable
from lab.state import default_dir, lab_admin_tls, running_endpoints

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
    tls_paths: tuple[str | None, str | None, str | None] = (None, None, None)
    insecure: bool = False

    def tls(self) -> TlsFiles | None:
        """--tls-ca/--tls-cert/--tls-key (or TCPHOP_TLS_*), else the running lab's admin
        certificate (when no --endpoint is given), else None with --insecure; else a usage
        error saying what to give."""
        if any(self.tls_paths):
            try:
                given = TlsFiles.from_paths(*self.tls_paths)
            except ValueError:
                given = None
            if given is None or self.insecure:
                raise click.UsageError(
                    "give --tls-ca, --tls-cert and --tls-key together (and not --insecure)"
                )
            return given
        if self.insecure:
            return None
        lab_tls = lab_admin_tls(default_dir()) if not self.endpoint else None
        if lab_tls is None:
            raise click.UsageError(
                "no client certificate: give --tls-ca, --tls-cert and --tls-key (or "
                "TCPHOP_TLS_CA, TCPHOP_TLS_CERT, TCPHOP_TLS_KEY; `clusterctl pki` issues them), "
                "or --insecure for a cluster that runs without TLS"
            )
        return lab_tls

    def endpoints(self) -> list[str]:
        """--endpoint / TCPHOP_ENDPOINT, else the running lab's nodes, else the default."""
        if self.endpoint:
            return [e.strip() for e in self.endpoint.split(",") if e.strip()]
        return running_endpoints(default_dir()) or [DEFAULT_ENDPOINT]

    def run(self, call: Callable[[ClusterClient], Awaitable[_T]]) -> _T:
        """Run one SDK call; turn SDK errors into clusterctl's exit codes."""

        async def go() -> _T:
            tls = self.tls()
            async with ClusterClient(
                self.endpoints(), timeout_s=self.timeout_s, tls=tls, insecure=tls is None
            ) as client:
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
