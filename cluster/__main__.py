"""tcphopd: the daemon that runs on every node."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from cluster import configfile
from cluster.config import DaemonConfig, with_announces, with_etcd_user, with_security
from cluster.errors import ValidationError
from cluster.keys import DEFAULT_ROOT
from cluster.logs import configure_logging

NOT_IN_FILE = ("config", "teardown", "check_config", "version", "help")  # actions, not settings

EPILOG = f"""Every flag can also be given as an environment variable TCPHOP_<FLAG> (--node-id:
TCPHOP_NODE_ID; a switch takes 1 or 0; --announce takes a space-separated list) or as a key of
the TOML file --config (`node-id = "n1"`; default {configfile.DEFAULT_PATH} when it exists).
Precedence: flags, then the environment, then the file. Also read from the environment:
TCPHOP_ETCD_PASSWORD (see --etcd-user), TCPHOP_BPF_BUILD (where a BPF object compiled on this
node is cached, default /var/cache/tcphop/bpf; a package built with the object ships it) and
TCPHOP_BPF_PIN_ROOT (default root of --bpf-pin-dir, /sys/fs/bpf/tcphop)."""


def _file_keys(ctx: click.Context) -> dict[str, configfile.Key]:
    keys = {}
    for p in ctx.command.params:
        if not isinstance(p, click.Option) or p.name in NOT_IN_FILE or p.name is None:
            continue
        kind: type = list if p.multiple else bool if p.is_flag else str
        if isinstance(p.type, click.types.IntParamType):
            kind = int
        elif isinstance(p.type, click.types.FloatParamType):
            kind = float
        choices = tuple(p.type.choices) if isinstance(p.type, click.Choice) else ()
        keys[p.name.replace("_", "-")] = configfile.Key(kind, tuple(map(str, choices)))
    return keys


def _read_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """--config: load the file's settings as the defaults flags and environment override."""
    path = Path(value) if value else configfile.DEFAULT_PATH
    if not value and not path.exists():
        return None
    try:
        settings = configfile.load(path, _file_keys(ctx))
    except ValidationError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=_param) from None
    ctx.default_map = {name.replace("-", "_"): v for name, v in settings.items()}
    ctx.meta["tcphop.config"] = str(path)
    return str(path)


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "TCPHOP"},
    epilog=EPILOG,
)
@click.version_option(package_name="tcphop", prog_name="tcphopd")
@click.option(
    "--config",
    is_eager=True,
    expose_value=False,
    callback=_read_config,
    type=click.Path(dir_okay=False),
    help=f"TOML file of settings (keys: the flags without dashes) [default: "
    f"{configfile.DEFAULT_PATH} when it exists].",
)
@click.option("--node-id", required=True, help="Unique id of this node (a-z, 0-9, . _ -).")
@click.option(
    "--etcd",
    default="http://127.0.0.1:2379",
    show_default=True,
    envvar="TCPHOP_ETCD",
    help="etcd endpoints, comma-separated http://host:port.",
)
@click.option(
    "--listen",
    default="127.0.0.1:7700",
    show_default=True,
    help="HOST:PORT for this node's gRPC API.",
)
@click.option(
    "--advertise", default=None, help="HOST:PORT others use to reach the API (default: --listen)."
)
@click.option(
    "--lease-ttl",
    default=2,
    show_default=True,
    type=int,
    help="Seconds a dead node stays registered.",
)
@click.option(
    "--leader-ttl",
    default=2,
    show_default=True,
    type=int,
    help="Leader lease in seconds; a backup replaces a leader whose heartbeat stopped after "
    "0.6 x this, a crashed one at once.",
)
@click.option(
    "--uplink",
    default=None,
    help="Interface that receives VIP traffic; the leader "
    "holds its VIPs there. Without it VIP ownership is only recorded in etcd.",
)
@click.option(
    "--report-interval",
    default=0.5,
    show_default=True,
    type=float,
    help="Seconds between agent reports to the leader.",
)
@click.option(
    "--check-host",
    default=None,
    help="Address the health checks connect to: `vip` (each service's VIP on lo; the default "
    "with --datapath xdp) or a host (default 127.0.0.1).",
)
@click.option(
    "--datapath",
    default="none",
    show_default=True,
    type=click.Choice(["none", "xdp"]),
    help="xdp: the connection hop in the kernel on --uplink (needs root, clang, libbpf).",
)
@click.option(
    "--xdp-mode",
    default="native",
    show_default=True,
    type=click.Choice(["native", "generic"]),
    help="generic works on any interface (veth labs); native is the NIC driver's fast path.",
)
@click.option(
    "--bpf-pin-dir",
    default=None,
    help="Where the datapath pins its maps (a bpf filesystem) [default /sys/fs/bpf/tcphop/ID].",
)
@click.option(
    "--cpu-scope",
    default="machine",
    show_default=True,
    type=click.Choice(["machine", "process-group"]),
    help="Report the machine's CPU, or only this daemon's process group (labs).",
)
@click.option(
    "--teardown",
    is_flag=True,
    allow_from_autoenv=False,  # an action, never a setting: only as a flag
    help="Remove the XDP program, the VIPs on lo and the pinned maps this node's datapath "
    "keeps between runs (they survive a stop so that a restart keeps every flow), then exit.",
)
@click.option(
    "--descriptor-dir",
    default="/run/tcphop",
    show_default=True,
    help="Services with `delivery: descriptor` may name Unix sockets under this directory only.",
)
@click.option(
    "--http-listen",
    default=None,
    help="HOST:PORT for /metrics, /healthz, /leader and /ready, or `off` "
    "[default: the advertised host, port 7702].",
)
@click.option(
    "--http-plaintext",
    is_flag=True,
    help="Serve --http-listen as plain HTTP although the API has TLS (the endpoints are "
    "read-only; default HTTPS with the node's certificate, client certificates optional).",
)
@click.option("--etcd-prefix", default=DEFAULT_ROOT, show_default=True, hidden=True)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option("--tls-ca", envvar="TCPHOP_TLS_CA", help="CA bundle clients and peers chain to.")
@click.option("--tls-cert", envvar="TCPHOP_TLS_CERT", help="This node's certificate (role node).")
@click.option("--tls-key", envvar="TCPHOP_TLS_KEY", help="Its private key.")
@click.option(
    "--insecure",
    is_flag=True,
    help="No TLS and no roles on the API, telemetry and handoff channel: anyone who reaches "
    "them may reconfigure the cluster. Only for a network nobody else reaches.",
)
@click.option("--etcd-ca", envvar="TCPHOP_ETCD_CA", help="CA of etcd's certificate (https://).")
@click.option("--etcd-cert", envvar="TCPHOP_ETCD_CERT", help="Client certificate for etcd.")
@click.option("--etcd-key", envvar="TCPHOP_ETCD_KEY", help="Its private key.")
@click.option("--etcd-user", envvar="TCPHOP_ETCD_USER", help="etcd user (etcd with auth on).")
@click.option(
    "--etcd-password-file",
    help="File holding the etcd user's password (or TCPHOP_ETCD_PASSWORD; never a flag).",
)
@click.option(
    "--announce",
    multiple=True,
    help="An IPv4 prefix whose VIPs this node can announce (answer ARP for) when it leads; "
    "repeatable. A node whose prefixes miss a service's VIP is never designated primary or "
    "backup, nor elected. Default: any.",
)
@click.option("--log-json/--log-console", default=None, help="Default: JSON unless a TTY.")
@click.option(
    "--check-config",
    is_flag=True,
    allow_from_autoenv=False,
    help="Validate the settings (flags, environment, file), print each with where it came "
    "from, and exit: 0 when valid, 2 when not.",
)
@click.pass_context
def main(ctx: click.Context, /, **flags: Any) -> None:
    """Run the tcphop node daemon."""
    configure_logging(flags["log_level"], flags["log_json"])
    from cluster import daemon

    try:
        cfg = _config(flags)
    except ValidationError as e:
        raise click.UsageError("; ".join(_sourced(ctx, p) for p in e.problems)) from None
    if flags["check_config"]:
        _print_settings(ctx, flags)
        return
    if flags["teardown"]:
        if cfg.datapath != "xdp":
            raise click.UsageError("--teardown: give the datapath's flags (--datapath xdp ...)")
        sys.exit(asyncio.run(daemon.teardown(cfg)))
    sys.exit(asyncio.run(daemon.run(cfg)))


def _config(f: dict[str, Any]) -> DaemonConfig:
    """The validated configuration from the command line (click's parameters by name)."""
    cfg = DaemonConfig.build(
        f["node_id"], f["etcd"], f["listen"], f["advertise"], f["lease_ttl"], f["etcd_prefix"],
        f["leader_ttl"], f["uplink"], f["report_interval"], f["check_host"], f["cpu_scope"],
        f["datapath"], f["xdp_mode"], f["bpf_pin_dir"], f["descriptor_dir"], f["http_listen"],
        f["http_plaintext"],
    )  # fmt: skip
    cfg = with_etcd_user(
        with_announces(cfg, f["announce"]), f["etcd_user"], f["etcd_password_file"]
    )
    if f["teardown"]:
        return cfg  # decommissioning needs no certificates
    tls = (f["tls_ca"], f["tls_cert"], f["tls_key"])
    etcd_tls = (f["etcd_ca"], f["etcd_cert"], f["etcd_key"])
    return with_security(cfg, tls, f["insecure"], etcd_tls, f["etcd"])


def _sourced(ctx: click.Context, problem: str) -> str:
    """A problem about --flag, named as the file's key when the file set it."""
    flag, sep, rest = problem.partition(": ")
    name = flag.removeprefix("--").split(" ")[0].replace("-", "_")
    source = ctx.get_parameter_source(name) if sep and flag.startswith("--") else None
    if source == click.core.ParameterSource.DEFAULT_MAP:
        return f"{ctx.meta.get('tcphop.config')}: key {flag[2:]!r}: {rest}"
    if source == click.core.ParameterSource.ENVIRONMENT:
        return f"TCPHOP_{name.upper()} ({flag}): {rest}"
    return problem


def _print_settings(ctx: click.Context, flags: dict[str, Any]) -> None:
    """--check-config: every setting as TOML, with its source (flag, environment, file,
    default)."""
    origin = {"COMMANDLINE": "flag", "ENVIRONMENT": "environment", "DEFAULT_MAP": "file",
              "DEFAULT": "default"}  # fmt: skip
    for name in sorted(flags):
        if name in NOT_IN_FILE or flags[name] is None:
            continue
        value = flags[name]
        shown = list(value) if isinstance(value, tuple) else value
        source = ctx.get_parameter_source(name)
        where = origin.get(source.name if source else "", "")
        click.echo(f"{name.replace('_', '-')} = {json.dumps(shown)}  # {where}")


if __name__ == "__main__":
    main()
