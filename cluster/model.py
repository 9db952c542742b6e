"""tcphop's value types and the one place where they are validated.

Everything here is pure: frozen dataclasses, JSON-shaped documents in and out (YAML/JSON spec
files and etcd values share the same document form), and validation that names the field path
and the reason (`services.web.port: 70000 is not in 1..65535`). The SDK re-exports these types.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum

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


class Delivery(StrEnum):
    SPLICE = "splice"  # relay to the application's port on the node
    PROXY_V2 = "proxy-v2"  # the same, with a PROXY protocol v2 header carrying the client
    DESCRIPTOR = "descriptor"  # pass the socket itself over a Unix socket (HandoffListener)
    TRANSPARENT = "transparent"  # relay from the client's own address: unmodified applications


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
    VALUE_MALFORMED = "value_malformed"  # a stored value could not be read (subject: its key)


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
    # IPv4 prefixes whose VIPs this node can announce (answer ARP for) when it leads
    announces: tuple[str, ...] = ("0.0.0.0/0",)

    def can_announce(self, vip: str) -> bool:
        address = ipaddress.IPv4Address(vip)
        return any(address in ipaddress.IPv4Network(p, strict=False) for p in self.announces)


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    service: str
    up: bool
    latency_ms: float
    connections: int  # established on the service's VIP:port
    error: str = ""


@dataclass(frozen=True, slots=True)
class LoadReport:
    """One agent report: the node's load and its services' health checks."""

    node_id: str
    cpu: float  # 0..1 over all cores
    load1: float
    memory_used: float  # 0..1
    connections: int
    services: tuple[ServiceHealth, ...] = ()
    interval_s: float = 0.5
    at_unix_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Node:
    """A node as the cluster sees it: designation; registration and health while alive."""

    node_id: str
    designation: Designation
    registration: Registration | None = None
    health: LoadReport | None = None  # the agent's summary in etcd (every ~2 s)

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
    # l7: how the node a connection is handed off to gives it to the application
    delivery: Delivery = Delivery.SPLICE
    # splice: HOST:PORT (default 127.0.0.1:<port>); descriptor: a Unix socket path, where
    # "{node}" stands for the adopting node's id
    target: str = ""

    @property
    def delivery_target(self) -> str:
        if self.target:
            return self.target
        if self.delivery == Delivery.DESCRIPTOR:
            return f"/run/tcphop/{self.name}.sock"
        return f"127.0.0.1:{self.port}"


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
    malformed: tuple[str, ...] = ()  # keys whose stored values are skipped as unreadable
