"""clusterctl pki init | issue: a CA and certificates for a tcphop cluster (cluster/pki.py)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.context import CliError
from cluster.pki import init_ca, issue
from cluster.tls import Access, TlsError

SERVER = "server"
dir_option = click.option(
    "--dir", "directory", required=True, type=click.Path(path_type=Path), help="PKI directory."
)


@click.group("pki")
def pki() -> None:
    """A small CA for the cluster: node, admin and reader certificates."""


@pki.command("init")
@dir_option
def init(directory: Path) -> None:
    """Create DIR/ca.crt and DIR/ca.key (ECDSA P-256; the key is 0600)."""
    try:
        crt = init_ca(directory)
    except TlsError as e:
        raise CliError(str(e)) from None
    click.echo(f"CA created: {crt} (keep {directory / 'ca.key'} offline where you can)")


@pki.command("issue")
@dir_option
@click.option("--name", required=True, help="File name (DIR/NAME.crt, DIR/NAME.key).")
@click.option(
    "--role",
    required=True,
    type=click.Choice([*(str(a) for a in Access), SERVER]),
    help="node, admin, reader: a tcphop identity; server: etcd's certificate (no identity).",
)
@click.option("--node-id", default="", help="For --role node: the node id (default: NAME).")
@click.option("--san", multiple=True, help="An IP address or DNS name to add (repeatable).")
def issue_cmd(directory: Path, name: str, role: str, node_id: str, san: tuple[str, ...]) -> None:
    """Issue a certificate whose SAN URIs carry the role (and the node id)."""
    access = None if role == SERVER else Access(role)
    node = (node_id or name) if access == Access.NODE else node_id
    try:
        crt = issue(directory, name, access, node, san)
    except TlsError as e:
        raise CliError(str(e)) from None
    click.echo(f"issued {crt} ({role}{f', node {node}' if node else ''})")
