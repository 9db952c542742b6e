from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SchedulerRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEDULER_ROLE_UNSPECIFIED: _ClassVar[SchedulerRole]
    SCHEDULER_ROLE_PRIMARY: _ClassVar[SchedulerRole]
    SCHEDULER_ROLE_BACKUP: _ClassVar[SchedulerRole]
    SCHEDULER_ROLE_NONE: _ClassVar[SchedulerRole]

class ServingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVING_STATE_UNSPECIFIED: _ClassVar[ServingState]
    SERVING_STATE_ENABLED: _ClassVar[ServingState]
    SERVING_STATE_DISABLED: _ClassVar[ServingState]
    SERVING_STATE_DRAINING: _ClassVar[ServingState]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_NODE_JOINED: _ClassVar[EventType]
    EVENT_TYPE_NODE_LEFT: _ClassVar[EventType]
    EVENT_TYPE_DESIGNATION_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_SERVICE_APPLIED: _ClassVar[EventType]
    EVENT_TYPE_SERVICE_DELETED: _ClassVar[EventType]
    EVENT_TYPE_LEADER_ELECTED: _ClassVar[EventType]
    EVENT_TYPE_LEADER_STEPPED_DOWN: _ClassVar[EventType]
    EVENT_TYPE_HANDOVER_STARTED: _ClassVar[EventType]
    EVENT_TYPE_HANDOVER_COMPLETED: _ClassVar[EventType]
    EVENT_TYPE_HANDOVER_ABORTED: _ClassVar[EventType]
    EVENT_TYPE_VALUE_MALFORMED: _ClassVar[EventType]
SCHEDULER_ROLE_UNSPECIFIED: SchedulerRole
SCHEDULER_ROLE_PRIMARY: SchedulerRole
SCHEDULER_ROLE_BACKUP: SchedulerRole
SCHEDULER_ROLE_NONE: SchedulerRole
SERVING_STATE_UNSPECIFIED: ServingState
SERVING_STATE_ENABLED: ServingState
SERVING_STATE_DISABLED: ServingState
SERVING_STATE_DRAINING: ServingState
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_NODE_JOINED: EventType
EVENT_TYPE_NODE_LEFT: EventType
EVENT_TYPE_DESIGNATION_CHANGED: EventType
EVENT_TYPE_SERVICE_APPLIED: EventType
EVENT_TYPE_SERVICE_DELETED: EventType
EVENT_TYPE_LEADER_ELECTED: EventType
EVENT_TYPE_LEADER_STEPPED_DOWN: EventType
EVENT_TYPE_HANDOVER_STARTED: EventType
EVENT_TYPE_HANDOVER_COMPLETED: EventType
EVENT_TYPE_HANDOVER_ABORTED: EventType
EVENT_TYPE_VALUE_MALFORMED: EventType

class Designation(_message.Message):
    __slots__ = ("node_id", "role", "serving", "weight")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    role: SchedulerRole
    serving: ServingState
    weight: int
    def __init__(self, node_id: _Optional[str] = ..., role: _Optional[_Union[SchedulerRole, str]] = ..., serving: _Optional[_Union[ServingState, str]] = ..., weight: _Optional[int] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("node_id", "alive", "endpoint", "hostname", "pid", "version", "started_at_unix_s", "designation", "health", "announces")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    DESIGNATION_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    ANNOUNCES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    alive: bool
    endpoint: str
    hostname: str
    pid: int
    version: str
    started_at_unix_s: float
    designation: Designation
    health: LoadReport
    announces: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node_id: _Optional[str] = ..., alive: _Optional[bool] = ..., endpoint: _Optional[str] = ..., hostname: _Optional[str] = ..., pid: _Optional[int] = ..., version: _Optional[str] = ..., started_at_unix_s: _Optional[float] = ..., designation: _Optional[_Union[Designation, _Mapping]] = ..., health: _Optional[_Union[LoadReport, _Mapping]] = ..., announces: _Optional[_Iterable[str]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes", "revision")
    NODES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    revision: int
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class GetNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: Node
    def __init__(self, node: _Optional[_Union[Node, _Mapping]] = ...) -> None: ...

class DesignateRequest(_message.Message):
    __slots__ = ("node_id", "role", "force")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    role: SchedulerRole
    force: bool
    def __init__(self, node_id: _Optional[str] = ..., role: _Optional[_Union[SchedulerRole, str]] = ..., force: _Optional[bool] = ...) -> None: ...

class DesignateResponse(_message.Message):
    __slots__ = ("designation", "warnings")
    DESIGNATION_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    designation: Designation
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, designation: _Optional[_Union[Designation, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class SetServingRequest(_message.Message):
    __slots__ = ("node_id", "serving", "weight")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    serving: ServingState
    weight: int
    def __init__(self, node_id: _Optional[str] = ..., serving: _Optional[_Union[ServingState, str]] = ..., weight: _Optional[int] = ...) -> None: ...

class SetServingResponse(_message.Message):
    __slots__ = ("designation",)
    DESIGNATION_FIELD_NUMBER: _ClassVar[int]
    designation: Designation
    def __init__(self, designation: _Optional[_Union[Designation, _Mapping]] = ...) -> None: ...

class Pool(_message.Message):
    __slots__ = ("all", "nodes")
    ALL_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    all: bool
    nodes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, all: _Optional[bool] = ..., nodes: _Optional[_Iterable[str]] = ...) -> None: ...

class HealthCheck(_message.Message):
    __slots__ = ("type", "port", "path", "interval_s", "timeout_s", "rise", "fall", "expect_status")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    RISE_FIELD_NUMBER: _ClassVar[int]
    FALL_FIELD_NUMBER: _ClassVar[int]
    EXPECT_STATUS_FIELD_NUMBER: _ClassVar[int]
    type: str
    port: int
    path: str
    interval_s: float
    timeout_s: float
    rise: int
    fall: int
    expect_status: int
    def __init__(self, type: _Optional[str] = ..., port: _Optional[int] = ..., path: _Optional[str] = ..., interval_s: _Optional[float] = ..., timeout_s: _Optional[float] = ..., rise: _Optional[int] = ..., fall: _Optional[int] = ..., expect_status: _Optional[int] = ...) -> None: ...

class HeaderMatch(_message.Message):
    __slots__ = ("name", "exact", "regex")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    REGEX_FIELD_NUMBER: _ClassVar[int]
    name: str
    exact: str
    regex: str
    def __init__(self, name: _Optional[str] = ..., exact: _Optional[str] = ..., regex: _Optional[str] = ...) -> None: ...

class CookieMatch(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Match(_message.Message):
    __slots__ = ("path_prefix", "path_regex", "host", "header", "cookie")
    PATH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    PATH_REGEX_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    COOKIE_FIELD_NUMBER: _ClassVar[int]
    path_prefix: str
    path_regex: str
    host: str
    header: HeaderMatch
    cookie: CookieMatch
    def __init__(self, path_prefix: _Optional[str] = ..., path_regex: _Optional[str] = ..., host: _Optional[str] = ..., header: _Optional[_Union[HeaderMatch, _Mapping]] = ..., cookie: _Optional[_Union[CookieMatch, _Mapping]] = ...) -> None: ...

class Rule(_message.Message):
    __slots__ = ("name", "match", "pool", "policy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    name: str
    match: Match
    pool: Pool
    policy: str
    def __init__(self, name: _Optional[str] = ..., match: _Optional[_Union[Match, _Mapping]] = ..., pool: _Optional[_Union[Pool, _Mapping]] = ..., policy: _Optional[str] = ...) -> None: ...

class ServiceSpec(_message.Message):
    __slots__ = ("name", "vip", "port", "protocol", "mode", "pool", "policy", "persistence", "health_check", "rules", "delivery", "target")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VIP_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PERSISTENCE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_CHECK_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    name: str
    vip: str
    port: int
    protocol: str
    mode: str
    pool: Pool
    policy: str
    persistence: str
    health_check: HealthCheck
    rules: _containers.RepeatedCompositeFieldContainer[Rule]
    delivery: str
    target: str
    def __init__(self, name: _Optional[str] = ..., vip: _Optional[str] = ..., port: _Optional[int] = ..., protocol: _Optional[str] = ..., mode: _Optional[str] = ..., pool: _Optional[_Union[Pool, _Mapping]] = ..., policy: _Optional[str] = ..., persistence: _Optional[str] = ..., health_check: _Optional[_Union[HealthCheck, _Mapping]] = ..., rules: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ..., delivery: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class ApplyServiceRequest(_message.Message):
    __slots__ = ("service",)
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    service: ServiceSpec
    def __init__(self, service: _Optional[_Union[ServiceSpec, _Mapping]] = ...) -> None: ...

class ApplyServiceResponse(_message.Message):
    __slots__ = ("service", "result", "warnings", "revision")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    service: ServiceSpec
    result: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    revision: int
    def __init__(self, service: _Optional[_Union[ServiceSpec, _Mapping]] = ..., result: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., revision: _Optional[int] = ...) -> None: ...

class ApplyServicesRequest(_message.Message):
    __slots__ = ("services",)
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[ServiceSpec]
    def __init__(self, services: _Optional[_Iterable[_Union[ServiceSpec, _Mapping]]] = ...) -> None: ...

class ApplyServicesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ApplyServiceResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[ApplyServiceResponse, _Mapping]]] = ...) -> None: ...

class ListServicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListServicesResponse(_message.Message):
    __slots__ = ("services",)
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[ServiceSpec]
    def __init__(self, services: _Optional[_Iterable[_Union[ServiceSpec, _Mapping]]] = ...) -> None: ...

class GetServiceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetServiceResponse(_message.Message):
    __slots__ = ("service",)
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    service: ServiceSpec
    def __init__(self, service: _Optional[_Union[ServiceSpec, _Mapping]] = ...) -> None: ...

class DeleteServiceRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteServiceResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class Leader(_message.Message):
    __slots__ = ("node_id", "endpoint", "term", "since_unix_s", "note")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    SINCE_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    endpoint: str
    term: int
    since_unix_s: float
    note: str
    def __init__(self, node_id: _Optional[str] = ..., endpoint: _Optional[str] = ..., term: _Optional[int] = ..., since_unix_s: _Optional[float] = ..., note: _Optional[str] = ...) -> None: ...

class Handover(_message.Message):
    __slots__ = ("from_node", "to_node", "term", "state", "at_unix_s", "new_term", "new_leader")
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    NEW_TERM_FIELD_NUMBER: _ClassVar[int]
    NEW_LEADER_FIELD_NUMBER: _ClassVar[int]
    from_node: str
    to_node: str
    term: int
    state: str
    at_unix_s: float
    new_term: int
    new_leader: str
    def __init__(self, from_node: _Optional[str] = ..., to_node: _Optional[str] = ..., term: _Optional[int] = ..., state: _Optional[str] = ..., at_unix_s: _Optional[float] = ..., new_term: _Optional[int] = ..., new_leader: _Optional[str] = ...) -> None: ...

class VipOwner(_message.Message):
    __slots__ = ("vip", "node_id", "term")
    VIP_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    vip: str
    node_id: str
    term: int
    def __init__(self, vip: _Optional[str] = ..., node_id: _Optional[str] = ..., term: _Optional[int] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("answered_by", "nodes", "services", "revision", "etcd_endpoints", "leader", "vip_owners", "candidates", "handover", "malformed_keys")
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ETCD_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    VIP_OWNERS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    HANDOVER_FIELD_NUMBER: _ClassVar[int]
    MALFORMED_KEYS_FIELD_NUMBER: _ClassVar[int]
    answered_by: str
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    services: int
    revision: int
    etcd_endpoints: _containers.RepeatedScalarFieldContainer[str]
    leader: Leader
    vip_owners: _containers.RepeatedCompositeFieldContainer[VipOwner]
    candidates: _containers.RepeatedScalarFieldContainer[str]
    handover: Handover
    malformed_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, answered_by: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., services: _Optional[int] = ..., revision: _Optional[int] = ..., etcd_endpoints: _Optional[_Iterable[str]] = ..., leader: _Optional[_Union[Leader, _Mapping]] = ..., vip_owners: _Optional[_Iterable[_Union[VipOwner, _Mapping]]] = ..., candidates: _Optional[_Iterable[str]] = ..., handover: _Optional[_Union[Handover, _Mapping]] = ..., malformed_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("from_revision",)
    FROM_REVISION_FIELD_NUMBER: _ClassVar[int]
    from_revision: int
    def __init__(self, from_revision: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("revision", "type", "subject", "node", "service", "designation", "leader", "handover")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    DESIGNATION_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    HANDOVER_FIELD_NUMBER: _ClassVar[int]
    revision: int
    type: EventType
    subject: str
    node: Node
    service: ServiceSpec
    designation: Designation
    leader: Leader
    handover: Handover
    def __init__(self, revision: _Optional[int] = ..., type: _Optional[_Union[EventType, str]] = ..., subject: _Optional[str] = ..., node: _Optional[_Union[Node, _Mapping]] = ..., service: _Optional[_Union[ServiceSpec, _Mapping]] = ..., designation: _Optional[_Union[Designation, _Mapping]] = ..., leader: _Optional[_Union[Leader, _Mapping]] = ..., handover: _Optional[_Union[Handover, _Mapping]] = ...) -> None: ...

class ServiceHealth(_message.Message):
    __slots__ = ("service", "up", "latency_ms", "connections", "error")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    service: str
    up: bool
    latency_ms: float
    connections: int
    error: str
    def __init__(self, service: _Optional[str] = ..., up: _Optional[bool] = ..., latency_ms: _Optional[float] = ..., connections: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class LoadReport(_message.Message):
    __slots__ = ("node_id", "cpu", "load1", "memory_used", "connections", "services", "interval_s", "at_unix_s")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CPU_FIELD_NUMBER: _ClassVar[int]
    LOAD1_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_S_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    cpu: float
    load1: float
    memory_used: float
    connections: int
    services: _containers.RepeatedCompositeFieldContainer[ServiceHealth]
    interval_s: float
    at_unix_s: float
    def __init__(self, node_id: _Optional[str] = ..., cpu: _Optional[float] = ..., load1: _Optional[float] = ..., memory_used: _Optional[float] = ..., connections: _Optional[int] = ..., services: _Optional[_Iterable[_Union[ServiceHealth, _Mapping]]] = ..., interval_s: _Optional[float] = ..., at_unix_s: _Optional[float] = ...) -> None: ...

class ReportAck(_message.Message):
    __slots__ = ("term",)
    TERM_FIELD_NUMBER: _ClassVar[int]
    term: int
    def __init__(self, term: _Optional[int] = ...) -> None: ...

class PlaceRequest(_message.Message):
    __slots__ = ("service", "count", "client")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    service: str
    count: int
    client: str
    def __init__(self, service: _Optional[str] = ..., count: _Optional[int] = ..., client: _Optional[str] = ...) -> None: ...

class PlaceResponse(_message.Message):
    __slots__ = ("counts", "eligible")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    counts: _containers.ScalarMap[str, int]
    eligible: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, counts: _Optional[_Mapping[str, int]] = ..., eligible: _Optional[_Iterable[str]] = ...) -> None: ...

class NodeLoad(_message.Message):
    __slots__ = ("report", "age_s", "fresh")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    AGE_S_FIELD_NUMBER: _ClassVar[int]
    FRESH_FIELD_NUMBER: _ClassVar[int]
    report: LoadReport
    age_s: float
    fresh: bool
    def __init__(self, report: _Optional[_Union[LoadReport, _Mapping]] = ..., age_s: _Optional[float] = ..., fresh: _Optional[bool] = ...) -> None: ...

class ServiceWeights(_message.Message):
    __slots__ = ("service", "weights")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    service: str
    weights: _containers.ScalarMap[str, int]
    def __init__(self, service: _Optional[str] = ..., weights: _Optional[_Mapping[str, int]] = ...) -> None: ...

class GetLoadsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetLoadsResponse(_message.Message):
    __slots__ = ("leader", "term", "loads", "weights", "refused_reports")
    class RefusedReportsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    LEADER_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LOADS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_REPORTS_FIELD_NUMBER: _ClassVar[int]
    leader: str
    term: int
    loads: _containers.RepeatedCompositeFieldContainer[NodeLoad]
    weights: _containers.RepeatedCompositeFieldContainer[ServiceWeights]
    refused_reports: _containers.ScalarMap[str, int]
    def __init__(self, leader: _Optional[str] = ..., term: _Optional[int] = ..., loads: _Optional[_Iterable[_Union[NodeLoad, _Mapping]]] = ..., weights: _Optional[_Iterable[_Union[ServiceWeights, _Mapping]]] = ..., refused_reports: _Optional[_Mapping[str, int]] = ...) -> None: ...

class TcpState(_message.Message):
    __slots__ = ("local_addr", "local_port", "peer_addr", "peer_port", "snd_seq", "rcv_seq", "send_queue", "recv_queue", "mss", "snd_wscale", "rcv_wscale", "sack", "timestamps", "tsval", "window", "peer_closed")
    LOCAL_ADDR_FIELD_NUMBER: _ClassVar[int]
    LOCAL_PORT_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDR_FIELD_NUMBER: _ClassVar[int]
    PEER_PORT_FIELD_NUMBER: _ClassVar[int]
    SND_SEQ_FIELD_NUMBER: _ClassVar[int]
    RCV_SEQ_FIELD_NUMBER: _ClassVar[int]
    SEND_QUEUE_FIELD_NUMBER: _ClassVar[int]
    RECV_QUEUE_FIELD_NUMBER: _ClassVar[int]
    MSS_FIELD_NUMBER: _ClassVar[int]
    SND_WSCALE_FIELD_NUMBER: _ClassVar[int]
    RCV_WSCALE_FIELD_NUMBER: _ClassVar[int]
    SACK_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    TSVAL_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    PEER_CLOSED_FIELD_NUMBER: _ClassVar[int]
    local_addr: str
    local_port: int
    peer_addr: str
    peer_port: int
    snd_seq: int
    rcv_seq: int
    send_queue: bytes
    recv_queue: bytes
    mss: int
    snd_wscale: int
    rcv_wscale: int
    sack: bool
    timestamps: bool
    tsval: int
    window: bytes
    peer_closed: bool
    def __init__(self, local_addr: _Optional[str] = ..., local_port: _Optional[int] = ..., peer_addr: _Optional[str] = ..., peer_port: _Optional[int] = ..., snd_seq: _Optional[int] = ..., rcv_seq: _Optional[int] = ..., send_queue: _Optional[bytes] = ..., recv_queue: _Optional[bytes] = ..., mss: _Optional[int] = ..., snd_wscale: _Optional[int] = ..., rcv_wscale: _Optional[int] = ..., sack: _Optional[bool] = ..., timestamps: _Optional[bool] = ..., tsval: _Optional[int] = ..., window: _Optional[bytes] = ..., peer_closed: _Optional[bool] = ...) -> None: ...

class AdoptMessage(_message.Message):
    __slots__ = ("id", "service", "state", "commit", "go")
    ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    GO_FIELD_NUMBER: _ClassVar[int]
    id: int
    service: str
    state: TcpState
    commit: bool
    go: bool
    def __init__(self, id: _Optional[int] = ..., service: _Optional[str] = ..., state: _Optional[_Union[TcpState, _Mapping]] = ..., commit: _Optional[bool] = ..., go: _Optional[bool] = ...) -> None: ...

class AdoptReply(_message.Message):
    __slots__ = ("id", "ok", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    ok: bool
    error: str
    def __init__(self, id: _Optional[int] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class GetDatapathRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetDatapathResponse(_message.Message):
    __slots__ = ("node_id", "kind", "interface", "mode", "address", "stats", "scheduling", "vips", "trusted", "rings", "handoff_stats", "rule_hits", "handoff_p50_ms", "handoff_p99_ms", "loop_lag_ms", "loop_lag_max_ms", "rule_match_max_ms")
    class StatsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class HandoffStatsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class RuleHitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_FIELD_NUMBER: _ClassVar[int]
    VIPS_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_FIELD_NUMBER: _ClassVar[int]
    RINGS_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_STATS_FIELD_NUMBER: _ClassVar[int]
    RULE_HITS_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_P50_MS_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_P99_MS_FIELD_NUMBER: _ClassVar[int]
    LOOP_LAG_MS_FIELD_NUMBER: _ClassVar[int]
    LOOP_LAG_MAX_MS_FIELD_NUMBER: _ClassVar[int]
    RULE_MATCH_MAX_MS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    kind: str
    interface: str
    mode: str
    address: str
    stats: _containers.ScalarMap[str, int]
    scheduling: bool
    vips: _containers.RepeatedScalarFieldContainer[str]
    trusted: _containers.RepeatedScalarFieldContainer[str]
    rings: _containers.RepeatedCompositeFieldContainer[ServiceWeights]
    handoff_stats: _containers.ScalarMap[str, int]
    rule_hits: _containers.ScalarMap[str, int]
    handoff_p50_ms: float
    handoff_p99_ms: float
    loop_lag_ms: float
    loop_lag_max_ms: float
    rule_match_max_ms: float
    def __init__(self, node_id: _Optional[str] = ..., kind: _Optional[str] = ..., interface: _Optional[str] = ..., mode: _Optional[str] = ..., address: _Optional[str] = ..., stats: _Optional[_Mapping[str, int]] = ..., scheduling: _Optional[bool] = ..., vips: _Optional[_Iterable[str]] = ..., trusted: _Optional[_Iterable[str]] = ..., rings: _Optional[_Iterable[_Union[ServiceWeights, _Mapping]]] = ..., handoff_stats: _Optional[_Mapping[str, int]] = ..., rule_hits: _Optional[_Mapping[str, int]] = ..., handoff_p50_ms: _Optional[float] = ..., handoff_p99_ms: _Optional[float] = ..., loop_lag_ms: _Optional[float] = ..., loop_lag_max_ms: _Optional[float] = ..., rule_match_max_ms: _Optional[float] = ...) -> None: ...

class Flow(_message.Message):
    __slots__ = ("client", "client_port", "vip", "port", "node")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_PORT_FIELD_NUMBER: _ClassVar[int]
    VIP_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    client: str
    client_port: int
    vip: str
    port: int
    node: str
    def __init__(self, client: _Optional[str] = ..., client_port: _Optional[int] = ..., vip: _Optional[str] = ..., port: _Optional[int] = ..., node: _Optional[str] = ...) -> None: ...

class ListFlowsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListFlowsResponse(_message.Message):
    __slots__ = ("node_id", "flows", "truncated")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    FLOWS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    flows: _containers.RepeatedCompositeFieldContainer[Flow]
    truncated: bool
    def __init__(self, node_id: _Optional[str] = ..., flows: _Optional[_Iterable[_Union[Flow, _Mapping]]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class ListConnectionsRequest(_message.Message):
    __slots__ = ("vips",)
    VIPS_FIELD_NUMBER: _ClassVar[int]
    vips: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, vips: _Optional[_Iterable[str]] = ...) -> None: ...

class ListConnectionsResponse(_message.Message):
    __slots__ = ("node_id", "connections")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    connections: _containers.RepeatedCompositeFieldContainer[Flow]
    def __init__(self, node_id: _Optional[str] = ..., connections: _Optional[_Iterable[_Union[Flow, _Mapping]]] = ...) -> None: ...
