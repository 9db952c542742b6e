"""tcphopd: the daemon that runs on every node."""

from __future__ import annotations

import asyncio
import sys

import click

from cluster.config import DaemonConfig, with_security
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
@click.option("--log-json/--log-console", default=None, help="Default: JSON unless a TTY.")
def main(
    node_id: str,
    etcd: str,
    listen: str,
    advertise: str | None,
    lease_ttl: int,
    leader_ttl: int,
    uplink: str | None,
    report_interval: float,
    check_host: str | None,
    datapath: str,
    xdp_mode: str,
    bpf_pin_dir: str | None,
    cpu_scope: str,
    teardown: bool,
    descriptor_dir: str,
    etcd_prefix: str,
    log_level: str,
    log_json: bool | None,
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    insecure: bool,
    etcd_ca: str | None,
    etcd_cert: str | None,
    etcd_key: str | None,
) -> None:
    """Run the tcphop node daemon."""
    configure_logging(log_level, log_json)
    from cluster import daemon

    try:
        cfg = DaemonConfig.build(
            node_id,
            etcd,
            listen,
            advertise,
            lease_ttl,
            etcd_prefix,
            leader_ttl,
            uplink,
            report_interval,
            check_host,
            cpu_scope,
            datapath,
            xdp_mode,
            bpf_pin_dir,
            descriptor_dir,
        )
        if not teardown:
            cfg = with_security(
                cfg, (tls_ca, tls_cert, tls_key), insecure, (etcd_ca, etcd_cert, etcd_key), etcd
            )
    except ValidationError as e:
        raise click.UsageError(str(e)) from None
    if teardown:
        if cfg.datapath != "xdp":
            raise click.UsageError("--teardown: give the datapath's flags (--datapath xdp ...)")
        sys.exit(asyncio.run(daemon.teardown(cfg)))
    sys.exit(asyncio.run(daemon.run(cfg)))


if __name__ == "__main__":
    main()
