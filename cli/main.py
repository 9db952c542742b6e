"""clusterctl: the command line of a tcphop cluster. It speaks only through the SDK.

Exit codes: 0 success; 1 the cluster refused (bad input, unknown node or service), with a
one-line message; 2 a usage error (missing or unknown option or argument); 3 the cluster cannot
be reached. A traceback only with --debug.
"""

from __future__ import annotations

import os
import sys

import click

from cli.commands import cluster, datapath, lab_cmd, pki, service, top
from cli.completion import completion
from cli.context import EXIT_UNREACHABLE, EXIT_USAGE, EXIT_USER, Context, Unreachable


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tcphop", prog_name="clusterctl")
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
@click.option("--tls-ca", envvar="TCPHOP_TLS_CA", help="CA the nodes' certificates chain to.")
@click.option("--tls-cert", envvar="TCPHOP_TLS_CERT", help="Client certificate (admin or reader).")
@click.option("--tls-key", envvar="TCPHOP_TLS_KEY", help="Its private key.")
@click.option("--insecure", is_flag=True, help="No TLS: for a cluster run with --insecure.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def cli(
    ctx: click.Context,
    endpoint: str | None,
    timeout_s: float,
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    insecure: bool,
    debug: bool,
) -> None:
    """Operate a tcphop cluster. Secure by default: a client certificate is needed (the running
    lab's admin certificate is found by itself)."""
    ctx.obj = Context(endpoint, timeout_s, debug, (tls_ca, tls_cert, tls_key), insecure)


for command in (
    *cluster.COMMANDS,
    service.service,
    top.top,
    datapath.datapath,
    lab_cmd.lab_group,
    pki.pki,
    completion,
):
    cli.add_command(command)


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    try:
        cli.main(prog_name="clusterctl", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx else ""
        click.echo(f"Error: {e.format_message()}{hint}", err=True)
        sys.exit(EXIT_USAGE)
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
