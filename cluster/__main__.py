"""tcphopd: the daemon that runs on every node."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from cluster.config import DaemonConfig, with_announces, with_etcd_user, with_security
from cluster.errors import ValidationError
from cluster.keys import DEFAULT_ROOT
from cluster.logs import configure_logging


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
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
    help="Seconds before a dead leader's lease expires and a backup takes over.",
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
def main(**flags: Any) -> None:
    """Run the tcphop node daemon."""
    configure_logging(flags["log_level"], flags["log_json"])
    from cluster import daemon

    try:
        cfg = _config(flags)
    except ValidationError as e:
        raise click.UsageError(str(e)) from None
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


if __name__ == "__main__":
    main()
