"""tcphop's value types and the one place where they are validated.

Everything here is pure: frozen dataclasses, JSON-shaped documents in and out (YAML/JSON spec
files and etcd values share the same document form), and validation that names the field path
and the reason (`services.web.port: 70000 is not in 1..65535`). The SDK re-exports these types.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, TypeVar

from cluster.errors import ValidationError

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token
DEFAULT_WEIGHT = 100
MAX_WEIGHT = 10_000


class Role(StrEnum):
    """Scheduler role of a node."""

    PRIMARY = "primary"
    BACKUP = "backup"
    NONE = "none"


class Serving(StrEnum):
    """Whether a node takes new connections as a content server."""

    ENABLED = "enabled"
    DISABLED = "disabled"
    DRAINING = "draining"


class Mode(StrEnum):
    L4 = "l4"
    L7 = "l7"


class Policy(StrEnum):
    LEAST_LOADED = "least-loaded"
    ROUND_ROBIN = "round-robin"
    WEIGHTED = "weighted"
    MAGLEV = "maglev"


class CheckType(StrEnum):
    TCP = "tcp"
    HTTP = "http"


class EventType(StrEnum):
    NODE_JOINED = "node_joined"
    NODE_LEFT = "node_left"
    DESIGNATION_CHANGED = "designation_changed"
    SERVICE_APPLIED = "service_applied"
    SERVICE_DELETED = "service_deleted"
    LEADER_ELECTED = "leader_elected"
    LEADER_STEPPED_DOWN = "leader_stepped_down"
    HANDOVER_STARTED = "handover_started"
    HANDOVER_COMPLETED = "handover_completed"
    HANDOVER_ABORTED = "handover_aborted"


# --- nodes ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Designation:
    """What an operator decided for a node: scheduler role, serving state and weight."""

    node_id: str
    role: Role = Role.NONE
    serving: Serving = Serving.ENABLED
    weight: int = DEFAULT_WEIGHT


@dataclass(frozen=True, slots=True)
class Registration:
    """What a live node says about itself (stored under its lease)."""

    node_id: str
    endpoint: str
    hostname: str
    pid: int
    version: str
    started_at_unix_s: float


@dataclass(frozen=True, slots=True)
class Node:
    """A node as the cluster sees it: its designation and, while alive, its registration."""

    node_id: str
    designation: Designation
    registration: Registration | None = None

    @property
    def alive(self) -> bool:
        return self.registration is not None


@dataclass(frozen=True, slots=True)
class LeaderRecord:
    """The elected scheduler. `term` grows by one with every new leader."""

    node_id: str
    endpoint: str
    term: int
    since_unix_s: float
    note: str = ""  # why the leader leads against its designation, when it does


@dataclass(frozen=True, slots=True)
class Handover:
    """A planned change of leader, from the leader of `term` to `to_node`."""

    from_node: str
    to_node: str
    term: int
    state: str  # started | completed | aborted
    at_unix_s: float
    new_term: int = 0
    new_leader: str = ""


@dataclass(frozen=True, slots=True)
class VipOwner:
    vip: str
    node_id: str
    term: int


def validate_node_id(node_id: str, where: str = "node_id") -> None:
    if not NAME_RE.match(node_id):
        raise ValidationError([f"{where}: {node_id!r} {_NAME_RULE}"])


def validate_weight(weight: int, where: str = "weight") -> None:
    if not 0 <= weight <= MAX_WEIGHT:
        raise ValidationError([f"{where}: {weight} is not in 0..{MAX_WEIGHT}"])


_NAME_RULE = "is not a valid name (1-63 of a-z, 0-9, '.', '_', '-'; alphanumeric at both ends)"


# --- services ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pool:
    """Servers a service (or rule) may use: every node, or the listed ones."""

    nodes: tuple[str, ...] = ()
    all: bool = False

    @classmethod
    def everyone(cls) -> Pool:
        return cls(all=True)


@dataclass(frozen=True, slots=True)
class HealthCheck:
    type: CheckType = CheckType.TCP
    port: int = 0  # 0: the service port
    path: str = "/"
    interval_s: float = 2.0
    timeout_s: float = 1.0
    rise: int = 2
    fall: int = 3
    expect_status: int = 200


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    name: str
    exact: str = ""
    regex: str = ""


@dataclass(frozen=True, slots=True)
class CookieMatch:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class Match:
    """All given criteria must hold (AND)."""

    path_prefix: str = ""
    path_regex: str = ""
    host: str = ""
    header: HeaderMatch | None = None
    cookie: CookieMatch | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    match: Match
    pool: Pool
    policy: Policy | None = None  # None: the service's policy


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    vip: str
    port: int
    protocol: str = "tcp"
    mode: Mode = Mode.L4
    pool: Pool = field(default_factory=Pool.everyone)
    policy: Policy = Policy.LEAST_LOADED
    persistence: str = "none"  # none | source-ip | cookie:<name>
    health_check: HealthCheck = field(default_factory=HealthCheck)
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True, slots=True)
class ApplyResult:
    service: ServiceSpec
    result: str  # created | updated | unchanged
    revision: int
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    revision: int
    type: EventType
    subject: str
    registration: Registration | None = None  # NODE_JOINED
    designation: Designation | None = None  # DESIGNATION_CHANGED
    service: ServiceSpec | None = None  # SERVICE_APPLIED
    leader: LeaderRecord | None = None  # LEADER_ELECTED, LEADER_STEPPED_DOWN (the old one)
    handover: Handover | None = None  # HANDOVER_*


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    answered_by: str
    nodes: tuple[Node, ...]
    services: int
    revision: int
    etcd_endpoints: tuple[str, ...]
    leader: LeaderRecord | None = None
    vip_owners: tuple[VipOwner, ...] = ()
    candidates: tuple[str, ...] = ()  # alive primary/backup nodes ready to lead
    handover: Handover | None = None  # the last planned handover


def validate_service(spec: ServiceSpec, where: str | None = None) -> None:
    """Check every semantic rule of a ServiceSpec; raise one ValidationError listing all."""
    at = where or f"services.{spec.name or '?'}"
    problems: list[str] = []
    if not NAME_RE.match(spec.name):
        problems.append(f"{at}.name: {spec.name!r} {_NAME_RULE}")
    problems += _vip_problems(spec.vip, f"{at}.vip")
    if not 1 <= spec.port <= 65535:
        problems.append(f"{at}.port: {spec.port} is not in 1..65535")
    if spec.protocol != "tcp":
        problems.append(f"{at}.protocol: {spec.protocol!r} is not supported (only 'tcp')")
    problems += _enum_problem(spec.mode, Mode, f"{at}.mode")
    problems += _enum_problem(spec.policy, Policy, f"{at}.policy")
    problems += _pool_problems(spec.pool, f"{at}.pool")
    problems += _persistence_problems(spec, f"{at}.persistence")
    problems += _check_problems(spec.health_check, f"{at}.health_check")
    if spec.rules and spec.mode != Mode.L7:
        problems.append(f"{at}.rules: rules need mode 'l7' (mode is {str(spec.mode)!r})")
    seen: set[str] = set()
    for i, rule in enumerate(spec.rules):
        rat = f"{at}.rules[{i}]"
        if rule.name in seen:
            problems.append(f"{rat}.name: {rule.name!r} is used by an earlier rule")
        seen.add(rule.name)
        problems += _rule_problems(rule, rat)
    if problems:
        raise ValidationError(problems)


def endpoint_problems(spec: ServiceSpec, others: Sequence[ServiceSpec]) -> list[str]:
    """A VIP:port serves one service; several services may share a VIP on other ports."""
    return [
        f"services.{spec.name}.port: {spec.vip}:{spec.port} is already used by service "
        f"{other.name!r}"
        for other in others
        if other.name != spec.name and (other.vip, other.port) == (spec.vip, spec.port)
    ]


def _vip_problems(vip: str, at: str) -> list[str]:
    try:
        addr = ipaddress.IPv4Address(vip)
    except ValueError:
        return [f"{at}: {vip!r} is not an IPv4 address"]
    if addr.is_unspecified or addr.is_loopback or addr.is_multicast or addr.is_link_local:
        return [f"{at}: {vip} cannot be a VIP (unspecified, loopback, multicast or link-local)"]
    if addr == ipaddress.IPv4Address("255.255.255.255"):
        return [f"{at}: {vip} is the broadcast address"]
    return []


_E = TypeVar("_E", bound=StrEnum)


def _enum_problem(value: object, enum: type[_E], at: str) -> list[str]:
    if value in enum.__members__.values():
        return []
    allowed = ", ".join(repr(str(m)) for m in enum)
    return [f"{at}: {value!r} is not one of {allowed}"]


def _pool_problems(pool: Pool, at: str) -> list[str]:
    if pool.all:
        return [f"{at}: 'all' cannot be combined with node ids"] if pool.nodes else []
    if not pool.nodes:
        return [f"{at}: must be 'all' or a non-empty list of node ids"]
    problems = [
        f"{at}[{i}]: {n!r} {_NAME_RULE}" for i, n in enumerate(pool.nodes) if not NAME_RE.match(n)
    ]
    dupes = sorted({n for n in pool.nodes if pool.nodes.count(n) > 1})
    if dupes:
        problems.append(f"{at}: node ids listed twice: {', '.join(dupes)}")
    return problems


def _persistence_problems(spec: ServiceSpec, at: str) -> list[str]:
    value = spec.persistence
    if value in ("none", "source-ip"):
        return []
    kind, sep, cookie = value.partition(":")
    if kind != "cookie" or not sep:
        return [f"{at}: {value!r} is not one of 'none', 'source-ip', 'cookie:<name>'"]
    if not HEADER_NAME_RE.match(cookie):
        return [f"{at}: {cookie!r} is not a valid cookie name"]
    if spec.mode != Mode.L7:
        return [f"{at}: cookie persistence needs mode 'l7' (an l4 service cannot read cookies)"]
    return []


def _check_problems(hc: HealthCheck, at: str) -> list[str]:
    problems = _enum_problem(hc.type, CheckType, f"{at}.type")
    if not 0 <= hc.port <= 65535:
        problems.append(f"{at}.port: {hc.port} is not in 0..65535 (0: the service port)")
    if not 0 < hc.interval_s <= 3600:
        problems.append(f"{at}.interval_s: {hc.interval_s} is not in (0, 3600]")
    if not 0 < hc.timeout_s <= hc.interval_s:
        problems.append(f"{at}.timeout_s: {hc.timeout_s} must be > 0 and <= interval_s")
    for name in ("rise", "fall"):
        value = getattr(hc, name)
        if not 1 <= value <= 100:
            problems.append(f"{at}.{name}: {value} is not in 1..100")
    if hc.type == CheckType.HTTP:
        if not hc.path.startswith("/"):
            problems.append(f"{at}.path: {hc.path!r} must start with '/'")
        if not 100 <= hc.expect_status <= 599:
            problems.append(f"{at}.expect_status: {hc.expect_status} is not in 100..599")
    return problems


def _rule_problems(rule: Rule, at: str) -> list[str]:
    problems = [] if NAME_RE.match(rule.name) else [f"{at}.name: {rule.name!r} {_NAME_RULE}"]
    m = rule.match
    if not (m.path_prefix or m.path_regex or m.host or m.header or m.cookie):
        problems.append(
            f"{at}.match: needs at least one of path_prefix, path_regex, host, header, cookie"
        )
    if m.path_prefix and not m.path_prefix.startswith("/"):
        problems.append(f"{at}.match.path_prefix: {m.path_prefix!r} must start with '/'")
    problems += _regex_problems(m.path_regex, f"{at}.match.path_regex")
    if m.header is not None:
        h = m.header
        if not HEADER_NAME_RE.match(h.name):
            problems.append(f"{at}.match.header.name: {h.name!r} is not a valid header name")
        if bool(h.exact) == bool(h.regex):
            problems.append(f"{at}.match.header: give exactly one of exact, regex")
        problems += _regex_problems(h.regex, f"{at}.match.header.regex")
    if m.cookie is not None and not HEADER_NAME_RE.match(m.cookie.name):
        problems.append(f"{at}.match.cookie.name: {m.cookie.name!r} is not a valid cookie name")
    problems += _pool_problems(rule.pool, f"{at}.pool")
    if rule.policy is not None:
        problems += _enum_problem(rule.policy, Policy, f"{at}.policy")
    return problems


def _regex_problems(pattern: str, at: str) -> list[str]:
    if not pattern:
        return []
    try:
        re.compile(pattern)
    except re.error as e:
        return [f"{at}: {pattern!r} is not a valid regular expression ({e})"]
    return []


# --- documents (YAML/JSON files and etcd values) ------------------------------------------


class _Doc:
    """Reads one mapping of a document, recording problems with their field paths."""

    def __init__(self, data: object, at: str, problems: list[str]) -> None:
        self.at, self.problems = at, problems
        if isinstance(data, Mapping):
            self.data: Mapping[str, object] = data
        else:
            problems.append(f"{at}: expected a mapping, got {_kind(data)}")
            self.data = {}

    def only(self, *allowed: str) -> None:
        for key in self.data:
            if key not in allowed:
                self.problems.append(
                    f"{self.at}.{key}: unknown field (allowed: {', '.join(allowed)})"
                )

    def get(self, key: str, kind: type[_T], default: _T) -> _T:
        value = self.data.get(key, default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.problems.append(f"{self.at}.{key}: expected {kind.__name__}, got {_kind(value)}")
            return default
        return value

    def sub(self, key: str) -> _Doc | None:
        return _Doc(self.data[key], f"{self.at}.{key}", self.problems) if key in self.data else None


_T = TypeVar("_T")


def _kind(value: object) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _pool_from(value: object, at: str, problems: list[str]) -> Pool:
    if value == "all":
        return Pool.everyone()
    if isinstance(value, list) and all(isinstance(n, str) for n in value):
        return Pool(nodes=tuple(value))
    problems.append(f"{at}: expected 'all' or a list of node ids, got {_kind(value)}")
    return Pool.everyone()


def _check_from(doc: _Doc | None) -> HealthCheck:
    d = HealthCheck()
    if doc is None:
        return d
    doc.only("type", "port", "path", "interval_s", "timeout_s", "rise", "fall", "expect_status")
    return HealthCheck(
        type=doc.get("type", str, str(d.type)),  # type: ignore[arg-type]  # checked later
        port=doc.get("port", int, d.port),
        path=doc.get("path", str, d.path),
        interval_s=doc.get("interval_s", float, d.interval_s),
        timeout_s=doc.get("timeout_s", float, d.timeout_s),
        rise=doc.get("rise", int, d.rise),
        fall=doc.get("fall", int, d.fall),
        expect_status=doc.get("expect_status", int, d.expect_status),
    )


def _match_from(doc: _Doc | None) -> Match:
    if doc is None:
        return Match()
    doc.only("path_prefix", "path_regex", "host", "header", "cookie")
    header = cookie = None
    if (h := doc.sub("header")) is not None:
        h.only("name", "exact", "regex")
        header = HeaderMatch(
            h.get("name", str, ""), h.get("exact", str, ""), h.get("regex", str, "")
        )
    if (c := doc.sub("cookie")) is not None:
        c.only("name", "value")
        cookie = CookieMatch(c.get("name", str, ""), c.get("value", str, ""))
    return Match(
        doc.get("path_prefix", str, ""),
        doc.get("path_regex", str, ""),
        doc.get("host", str, ""),
        header,
        cookie,
    )


def _rule_from(data: object, at: str, problems: list[str]) -> Rule:
    doc = _Doc(data, at, problems)
    doc.only("name", "match", "pool", "policy")
    policy = doc.get("policy", str, "")
    return Rule(
        name=doc.get("name", str, ""),
        match=_match_from(doc.sub("match")),
        pool=_pool_from(doc.data.get("pool"), f"{at}.pool", problems),
        policy=policy or None,  # type: ignore[arg-type]  # checked by validate_service
    )


def service_from_doc(data: object, where: str = "services") -> ServiceSpec:
    """Build and validate a ServiceSpec from a YAML/JSON document; raise ValidationError."""
    problems: list[str] = []
    name = data.get("name") if isinstance(data, Mapping) else None
    at = f"{where}.{name}" if isinstance(name, str) and name else where
    doc = _Doc(data, at, problems)
    doc.only(
        "name",
        "vip",
        "port",
        "protocol",
        "mode",
        "pool",
        "policy",
        "persistence",
        "health_check",
        "rules",
    )
    for required in ("name", "vip", "port"):
        if required not in doc.data and isinstance(data, Mapping):
            problems.append(f"{at}.{required}: required")
    raw_rules = doc.data.get("rules", [])
    if not isinstance(raw_rules, list):
        problems.append(f"{at}.rules: expected a list, got {_kind(raw_rules)}")
        raw_rules = []
    d = ServiceSpec(name="", vip="", port=0)
    spec = ServiceSpec(
        name=doc.get("name", str, ""),
        vip=doc.get("vip", str, ""),
        port=doc.get("port", int, 0),
        protocol=doc.get("protocol", str, d.protocol),
        mode=doc.get("mode", str, str(d.mode)),  # type: ignore[arg-type]  # checked below
        pool=_pool_from(doc.data.get("pool", "all"), f"{at}.pool", problems),
        policy=doc.get("policy", str, str(d.policy)),  # type: ignore[arg-type]
        persistence=doc.get("persistence", str, d.persistence),
        health_check=_check_from(doc.sub("health_check")),
        rules=tuple(_rule_from(r, f"{at}.rules[{i}]", problems) for i, r in enumerate(raw_rules)),
    )
    if problems:
        raise ValidationError(problems)
    validate_service(spec, at)
    return normalize_service(spec)


def normalize_service(spec: ServiceSpec) -> ServiceSpec:
    """Turn validated strings into enum members so that equal specs compare equal."""
    from dataclasses import replace

    return replace(
        spec,
        mode=Mode(spec.mode),
        policy=Policy(spec.policy),
        health_check=replace(spec.health_check, type=CheckType(spec.health_check.type)),
        rules=tuple(replace(r, policy=Policy(r.policy) if r.policy else None) for r in spec.rules),
    )


def service_to_doc(spec: ServiceSpec) -> dict[str, object]:
    """The canonical document form of a spec (the inverse of service_from_doc)."""
    hc = spec.health_check
    return {
        "name": spec.name,
        "vip": spec.vip,
        "port": spec.port,
        "protocol": spec.protocol,
        "mode": str(spec.mode),
        "pool": _pool_to_doc(spec.pool),
        "policy": str(spec.policy),
        "persistence": spec.persistence,
        "health_check": {
            "type": str(hc.type),
            "port": hc.port,
            "path": hc.path,
            "interval_s": hc.interval_s,
            "timeout_s": hc.timeout_s,
            "rise": hc.rise,
            "fall": hc.fall,
            "expect_status": hc.expect_status,
        },
        "rules": [_rule_to_doc(r) for r in spec.rules],
    }


def _pool_to_doc(pool: Pool) -> str | list[str]:
    return "all" if pool.all else list(pool.nodes)


def _rule_to_doc(rule: Rule) -> dict[str, object]:
    m = rule.match
    match: dict[str, object] = {
        k: v
        for k, v in (("path_prefix", m.path_prefix), ("path_regex", m.path_regex), ("host", m.host))
        if v
    }
    if m.header is not None:
        match["header"] = {
            k: v
            for k, v in (
                ("name", m.header.name),
                ("exact", m.header.exact),
                ("regex", m.header.regex),
            )
            if v
        }
    if m.cookie is not None:
        match["cookie"] = {"name": m.cookie.name, "value": m.cookie.value}
    doc: dict[str, object] = {"name": rule.name, "match": match, "pool": _pool_to_doc(rule.pool)}
    if rule.policy is not None:
        doc["policy"] = str(rule.policy)
    return doc


def services_from_file_doc(data: object) -> list[ServiceSpec]:
    """Accept one service, a list of services, or {services: [...]}; validate them all."""
    if isinstance(data, Mapping) and set(data) == {"services"}:
        data = data["services"]
    items = data if isinstance(data, list) else [data]
    specs: list[ServiceSpec] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        named = isinstance(item, Mapping) and isinstance(item.get("name"), str) and item["name"]
        try:
            specs.append(
                service_from_doc(item, "services" if named or len(items) == 1 else f"services[{i}]")
            )
        except ValidationError as e:
            problems += e.problems
    for i, spec in enumerate(specs):
        problems += endpoint_problems(spec, specs[:i])
    names = [s.name for s in specs]
    problems += [
        f"services.{n}: defined twice in the file" for n in sorted(set(names)) if names.count(n) > 1
    ]
    if problems:
        raise ValidationError(problems)
    return specs


def designation_to_doc(d: Designation) -> dict[str, object]:
    return {"role": str(d.role), "serving": str(d.serving), "weight": d.weight}


def designation_from_doc(node_id: str, data: Mapping[str, object]) -> Designation:
    weight = data.get("weight", DEFAULT_WEIGHT)
    return Designation(
        node_id,
        Role(str(data.get("role", "none"))),
        Serving(str(data.get("serving", "enabled"))),
        weight if isinstance(weight, int) else DEFAULT_WEIGHT,
    )


_R = TypeVar("_R", Registration, LeaderRecord, Handover, VipOwner)


def record_to_doc(record: Registration | LeaderRecord | Handover | VipOwner) -> dict[str, object]:
    return asdict(record)


def record_from_doc(cls: type[_R], data: Mapping[str, object]) -> _R:
    """A flat record written by tcphop; unknown fields (from newer versions) are ignored."""
    names = {f.name for f in fields(cls)}
    known: dict[str, Any] = {k: v for k, v in data.items() if k in names}
    return cls(**known)
