"""A small PKI for a tcphop cluster: `clusterctl pki init` and `pki issue`.

ECDSA P-256 keys (0600), a CA valid 10 years, leaf certificates valid 1 year carrying the
holder's access (and a node's id) as SAN URIs that cluster/tls.py reads. A convenience, not a
lock-in: SECURITY.md lists the fields for openssl, cfssl or cert-manager.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cluster.tls import NODE_NAME, NODE_PREFIX, ROLE_PREFIX, Access, TlsError, TlsFiles

CA_YEARS = 10
_BOTH_ENDS = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
LEAF_DAYS = 365


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(0o600)


def init_ca(directory: Path, name: str = "tcphop CA") -> Path:
    """DIR/ca.crt and DIR/ca.key; refuses to overwrite an existing CA."""
    directory.mkdir(parents=True, exist_ok=True)
    crt, key_path = directory / "ca.crt", directory / "ca.key"
    if crt.exists() or key_path.exists():
        raise TlsError(f"{directory} already holds a CA (ca.crt/ca.key); use another --dir")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return crt


def issue(
    directory: Path,
    name: str,
    access: Access | None,
    node_id: str = "",
    sans: tuple[str, ...] = (),
) -> Path:
    """DIR/NAME.crt and DIR/NAME.key, signed by DIR/ca.*. `access` None: a server certificate
    with no tcphop identity (etcd's); `sans`: IP addresses or DNS names."""
    try:
        ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
        ca = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    except (OSError, ValueError) as e:
        raise TlsError(f"no usable CA in {directory} ({e}); run `clusterctl pki init`") from None
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    if (access == Access.NODE) != bool(node_id):
        raise TlsError("a node certificate needs --node-id, and only a node certificate has one")
    names: list[x509.GeneralName] = [_san(s) for s in sans]
    if access is not None:
        names.append(x509.UniformResourceIdentifier(ROLE_PREFIX + access))
    if node_id:
        names += [x509.UniformResourceIdentifier(NODE_PREFIX + node_id), x509.DNSName(NODE_NAME)]
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(directory / f"{name}.key", key)
    out = directory / f"{name}.crt"
    out.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


def _san(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def certificate(
    directory: Path,
    name: str,
    access: Access | None,
    node_id: str = "",
    sans: tuple[str, ...] = (),
    ca_name: str = "tcphop CA",
) -> TlsFiles:
    """DIR/NAME's certificate, making the CA and issuing it on first use (labs and tests)."""
    if not (directory / "ca.crt").exists():
        init_ca(directory, ca_name)
    if not (directory / f"{name}.crt").exists():
        issue(directory, name, access, node_id, sans)
    return TlsFiles(directory / "ca.crt", directory / f"{name}.crt", directory / f"{name}.key")
