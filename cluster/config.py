"""tcphopd's typed configuration, validated when it is built."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from cluster.errors import ValidationError
from cluster.keys import DEFAULT_ROOT
from cluster.store.endpoints import endpoints_scheme, parse_endpoints
from cluster.tls import TlsError, TlsFiles
from cluster.validation import announce_problems, validate_node_id

DEFAULT_DESCRIPTOR_DIR = "/run/tcphop"
DEFAULT_HTTP_PORT = 7702


def _http_listen(value: str | None, advertise: str) -> str:
    """--http-listen: HOST:PORT, `off`, or by default the advertised host on port 7702."""
    if value is None:
        host = parse_hostport(advertise, "--advertise")[0]
        return f"{host}:{DEFAULT_HTTP_PORT}"
    if value == "off":
        return ""
    parse_hostport(value, "--http-listen")
    return value


def _descriptor_dir(value: str) -> str:
    path = os.path.normpath(value or DEFAULT_DESCRIPTOR_DIR)
    if not path.startswith("/") or path == "/":
        raise ValidationError([f"--descriptor-dir: {value!r} must be an absolute directory, not /"])
    return path


def _advertise(listen: str, advertise: str | None) -> str:
    host, port = parse_hostport(listen, "--listen")
    if advertise is None:
        if host in ("0.0.0.0", "::", "[::]") or port == 0:
            raise ValidationError(
                ["--advertise: required when --listen is a wildcard address or port 0"]
            )
        advertise = listen
    parse_hostport(advertise, "--advertise")
    return advertise


def _check_datapath(datapath: str, uplink: str | None, xdp_mode: str, advertise: str) -> None:
    if datapath not in ("none", "xdp"):
        raise ValidationError([f"--datapath: {datapath!r} is not one of none, xdp"])
    if datapath == "xdp" and not uplink:
        raise ValidationError(["--datapath xdp: needs --uplink (where VIP traffic arrives)"])
    if xdp_mode not in ("native", "generic"):
        raise ValidationError([f"--xdp-mode: {xdp_mode!r} is not one of native, generic"])
    if datapath == "xdp" and parse_hostport(advertise, "--advertise")[0].startswith("127."):
        raise ValidationError(
            [
                "--advertise: with --datapath xdp the advertised host is where other nodes "
                "send encapsulated traffic: give the uplink's address, not loopback"
            ]
        )


def with_security(
    cfg: DaemonConfig,
    tls: tuple[str | None, str | None, str | None],
    insecure: bool,
    etcd_tls: tuple[str | None, str | None, str | None],
    etcd: str,
) -> DaemonConfig:
    """The API's, the telemetry's and the handoff channel's TLS (--tls-ca/cert/key: all, or
    --insecure by name), and etcd's (--etcd-ca/cert/key, for https:// endpoints)."""
    api = _tls_files(tls, "--tls")
    if (api is None) != insecure:
        raise ValidationError(
            [
                "--tls-ca/--tls-cert/--tls-key: give this node's certificate (clusterctl pki "
                "issue --role node), or --insecure to run without TLS and roles"
                if api is None
                else "--insecure: drop it, or the --tls-* flags (not both)"
            ]
        )
    if api is not None:
        try:
            identity = api.identity()
        except TlsError as e:
            raise ValidationError([f"--tls-cert: {e}"]) from None
        if identity is None or identity.node_id != cfg.node_id:
            raise ValidationError(
                [
                    f"--tls-cert: not a node certificate for {cfg.node_id!r} (it needs the SAN "
                    f"URIs tcphop://role/node and tcphop://node/{cfg.node_id})"
                ]
            )
    store_tls = _tls_files(etcd_tls, "--etcd")
    try:
        https = endpoints_scheme(etcd) == "https"
    except ValueError as e:
        raise ValidationError([f"--etcd: {e}"]) from None
    if https != (store_tls is not None):
        raise ValidationError(
            [
                "--etcd: https:// endpoints need --etcd-ca/--etcd-cert/--etcd-key"
                if https
                else "--etcd-ca/--etcd-cert/--etcd-key need https:// etcd endpoints"
            ]
        )
    return replace(cfg, tls=api, etcd_tls=store_tls)


def with_announces(cfg: DaemonConfig, prefixes: tuple[str, ...]) -> DaemonConfig:
    """--announce (repeatable): the prefixes whose VIPs this node can take; default all."""
    if not prefixes:
        return cfg
    problems = announce_problems(list(prefixes), "--announce")
    if problems:
        raise ValidationError(problems)
    return replace(cfg, announces=prefixes)


def with_etcd_user(cfg: DaemonConfig, user: str | None, password_file: str | None) -> DaemonConfig:
    """--etcd-user with the password from --etcd-password-file or TCPHOP_ETCD_PASSWORD (never
    from the command line, where `ps` shows it)."""
    if not user:
        if password_file:
            raise ValidationError(["--etcd-password-file: goes with --etcd-user"])
        return cfg
    if password_file:
        try:
            password = Path(password_file).read_text().rstrip("\n")
        except OSError as e:
            raise ValidationError([f"--etcd-password-file: {e.strerror}"]) from None
    else:
        password = os.environ.get("TCPHOP_ETCD_PASSWORD", "")
    if not password:
        raise ValidationError(
            ["--etcd-user: give the password in --etcd-password-file or TCPHOP_ETCD_PASSWORD"]
        )
    return replace(cfg, etcd_auth=(user, password))


def _tls_files(paths: tuple[str | None, str | None, str | None], flag: str) -> TlsFiles | None:
    try:
        return TlsFiles.from_paths(*paths)
    except ValueError:
        raise ValidationError(
            [f"{flag}-ca, {flag}-cert, {flag}-key: give all three, or none"]
        ) from None


def parse_hostport(value: str, where: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValidationError([f"{where}: {value!r} is not of the form HOST:PORT"])
    return host, int(port)


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    node_id: str
    etcd: tuple[str, ...]
    listen: str
    advertise: str
    lease_ttl_s: int = 2
    etcd_timeout_s: float = 1.0
    key_root: str = DEFAULT_ROOT
    leader_ttl_s: int = 2
    uplink: str | None = None
    report_interval_s: float = 0.5
    check_host: str = "127.0.0.1"
    cpu_scope: str = "machine"
    datapath: str = "none"
    xdp_generic: bool = False
    bpf_pin_dir: str = ""
    descriptor_dir: str = DEFAULT_DESCRIPTOR_DIR
    tls: TlsFiles | None = None  # None only with --insecure
    etcd_tls: TlsFiles | None = None  # for https:// etcd endpoints
    announces: tuple[str, ...] = ("0.0.0.0/0",)  # VIP prefixes this node can announce
    etcd_auth: tuple[str, str] | None = field(default=None, repr=False)  # user, password
    http_listen: str = ""  # metrics and health (cluster/httpapi.py); "" for none
    http_plaintext: bool = False  # HTTP even when the API has TLS (--http-plaintext)

    @property
    def datapath_address(self) -> str:
        """The address other nodes encapsulate to: the advertised API host."""
        return parse_hostport(self.advertise, "--advertise")[0]

    @classmethod
    def build(
        cls,
        node_id: str,
        etcd: str,
        listen: str,
        advertise: str | None = None,
        lease_ttl_s: int = 2,
        key_root: str = DEFAULT_ROOT,
        leader_ttl_s: int = 2,
        uplink: str | None = None,
        report_interval_s: float = 0.5,
        check_host: str | None = None,
        cpu_scope: str = "machine",
        datapath: str = "none",
        xdp_mode: str = "native",
        bpf_pin_dir: str | None = None,
        descriptor_dir: str = "",
        http_listen: str | None = None,
        http_plaintext: bool = False,
    ) -> DaemonConfig:
        validate_node_id(node_id, "--node-id")
        try:
            endpoints = parse_endpoints(etcd)
        except ValueError as e:
            raise ValidationError([f"--etcd: {e}"]) from None
        advertise = _advertise(listen, advertise)
        for flag, ttl_s in (("--lease-ttl", lease_ttl_s), ("--leader-ttl", leader_ttl_s)):
            if ttl_s < 1:
                raise ValidationError([f"{flag}: {ttl_s} must be >= 1"])
        # Keepalive runs every ttl/4; each attempt may take etcd_timeout_s. Two attempts must
        # fit in the TTL, or one slow etcd answer loses the lease (Patroni's loop + 2*retry).
        timeout_s = min(1.0, lease_ttl_s / 4)
        _check_datapath(datapath, uplink, xdp_mode, advertise)
        if check_host is None:
            check_host = "vip" if datapath == "xdp" else "127.0.0.1"
        if not 0.05 <= report_interval_s <= 60:
            raise ValidationError([f"--report-interval: {report_interval_s} is not in 0.05..60"])
        return cls(
            node_id,
            endpoints,
            listen,
            advertise,
            lease_ttl_s,
            timeout_s,
            key_root,
            leader_ttl_s,
            uplink,
            report_interval_s,
            check_host,
            cpu_scope,
            datapath,
            xdp_mode == "generic",
            bpf_pin_dir or f"/sys/fs/bpf/tcphop/{node_id}",
            _descriptor_dir(descriptor_dir),
            http_listen=_http_listen(http_listen, advertise),
            http_plaintext=http_plaintext,
        )


@dataclass(frozen=True, slots=True)
class ElectionConfig:
    ttl_s: int = 1
    loop_s: float = 0.2
    retry_s: float = 0.3
    backup_delay_s: float = 0.3
    preempt_delay_s: float = 2.0  # after an unplanned takeover, keep leading at least this long
    margin_s: float = 0.1  # withdraw this long before the lease could expire
    beat_s: float = 0.1  # the leader's heartbeat (cluster/heartbeat.py)
    beat_timeout_s: float = 0.2  # a beat not taken this fast is retried on the next member
    silence_s: float = 0.5  # a leader serves this long after its last beat's send time

    @classmethod
    def for_ttl(cls, ttl_s: int) -> ElectionConfig:
        """Timings that scale with the lease: a cycle every ttl/5, etcd calls bounded by
        0.3 ttl, withdrawal 0.1 ttl before the lease could expire, a heartbeat every ttl/10
        (retried after 0.2 ttl) that keeps the leader serving for 0.5 ttl."""
        return cls(
            ttl_s,
            loop_s=ttl_s / 5,
            retry_s=0.3 * ttl_s,
            backup_delay_s=0.3 * ttl_s,
            preempt_delay_s=2.0 * ttl_s,
            margin_s=0.1 * ttl_s,
            beat_s=0.1 * ttl_s,
            beat_timeout_s=0.2 * ttl_s,
            silence_s=0.5 * ttl_s,
        )

    def __post_init__(self) -> None:
        if not self.loop_s + 2 * self.retry_s + self.margin_s < self.ttl_s:
            raise ValidationError(
                [
                    f"election timing: loop_s + 2 * retry_s + margin_s ({self.loop_s} + 2 * "
                    f"{self.retry_s} + {self.margin_s}) must be < ttl_s ({self.ttl_s}), or the "
                    "leader cannot step down before its lease expires elsewhere"
                ]
            )
        if not self.beat_s + self.beat_timeout_s < self.silence_s:
            raise ValidationError(
                [
                    f"election timing: beat_s + beat_timeout_s ({self.beat_s} + "
                    f"{self.beat_timeout_s}) must be < silence_s ({self.silence_s}), or a "
                    "leader cut from etcd learns it only after its heartbeat window ended"
                ]
            )
