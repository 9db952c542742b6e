"""Mutual TLS and identities, in one place: what a certificate says about its holder, and the
credentials every channel uses (gRPC API and telemetry, the handoff channel, etcd).

A tcphop certificate carries its holder's access in a SAN URI `tcphop://role/<reader|admin|
node>`, and a node certificate its node id in `tcphop://node/<id>` (cluster/pki.py issues them;
openssl or cfssl can issue the same, see SECURITY.md). Every node certificate also names the DNS
name NODE_NAME, which clients check instead of an address: nodes move, their identity does not.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import grpc
from cryptography import x509

NODE_NAME = "tcphop-node"
ROLE_PREFIX = "tcphop://role/"
NODE_PREFIX = "tcphop://node/"
CHANNEL_OPTIONS = (("grpc.ssl_target_name_override", NODE_NAME),)


class Access(StrEnum):
    READER = "reader"  # status, nodes, services, events, datapath stats and flows
    ADMIN = "admin"  # reader + designate, serving state, service apply/delete
    NODE = "node"  # telemetry as itself, connection lists, the handoff channel


@dataclass(frozen=True, slots=True)
class Identity:
    access: Access
    node_id: str = ""  # set for node certificates


class TlsError(Exception):
    """TLS material is missing, unreadable or not what it must be."""


@functools.lru_cache(maxsize=1024)
def identity_of(certificate: bytes) -> Identity | None:
    """The identity a (PEM or DER) certificate names; None when it names none. Cached: every
    RPC and handoff connection asks, and a cluster has few certificates."""
    try:
        cert = (
            x509.load_pem_x509_certificate(certificate)
            if certificate.lstrip().startswith(b"-----")
            else x509.load_der_x509_certificate(certificate)
        )
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return None
    uris = sans.value.get_values_for_type(x509.UniformResourceIdentifier)
    roles = [u.removeprefix(ROLE_PREFIX) for u in uris if u.startswith(ROLE_PREFIX)]
    nodes = [u.removeprefix(NODE_PREFIX) for u in uris if u.startswith(NODE_PREFIX)]
    if len(roles) != 1 or roles[0] not in Access.__members__.values() or len(nodes) > 1:
        return None
    access = Access(roles[0])
    if (access == Access.NODE) != bool(nodes):
        return None  # a node certificate names exactly one node; no other names one
    return Identity(access, nodes[0] if nodes else "")


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A CA bundle to trust, and this party's certificate and key (PEM files)."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_paths(cls, ca: str | None, cert: str | None, key: str | None) -> TlsFiles | None:
        """From three optional paths (flags or environment): all three, or None for none;
        ValueError for some."""
        if not (ca or cert or key):
            return None
        if not (ca and cert and key):
            raise ValueError("give the CA, the certificate and the key together, or none")
        return cls(Path(ca), Path(cert), Path(key))

    def read(self) -> tuple[bytes, bytes, bytes]:
        try:
            return self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()
        except OSError as e:
            raise TlsError(f"cannot read TLS file {e.filename}: {e.strerror}") from None

    def identity(self) -> Identity | None:
        return identity_of(self.read()[1])

    def server_credentials(self) -> grpc.ServerCredentials:
        ca, cert, key = self.read()
        return grpc.ssl_server_credentials([(key, cert)], ca, require_client_auth=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        ca, cert, key = self.read()
        return grpc.ssl_channel_credentials(ca, key, cert)

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx  # check_hostname against NODE_NAME (server_hostname=NODE_NAME)


def channel(
    target: str, tls: TlsFiles | None, options: tuple[tuple[str, int], ...] = ()
) -> grpc.aio.Channel:
    """A grpc.aio channel to a node: mutual TLS with `tls`, plaintext without."""
    if tls is None:
        return grpc.aio.insecure_channel(target, options=list(options))
    return grpc.aio.secure_channel(
        target, tls.channel_credentials(), options=[*options, *CHANNEL_OPTIONS]
    )
