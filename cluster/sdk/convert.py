"""The one place where protobuf messages and tcphop's dataclasses are converted.

Used by the SDK and by the server's servicers. Enumerated spec fields travel as strings and are
validated by `cluster.validation.validate_service` on the server, so a bad value sent by any client
gets the same field-path error as one read from a file.
"""

from __future__ import annotations

from dataclasses import asdict, fields, replace
from typing import Any, TypeVar

from google.protobuf.message import Message

from cluster.api.v1 import cluster_pb2 as pb
from cluster.model import (
    ClusterEvent,
    ClusterStatus,
    CookieMatch,
    Designation,
    EventType,
    Handover,
    HeaderMatch,
    HealthCheck,
    LeaderRecord,
    LoadReport,
    Match,
    Node,
    Pool,
    Registration,
    Role,
    Rule,
    ServiceHealth,
    ServiceSpec,
    Serving,
    VipOwner,
)

ROLE_TO_PB = {
    Role.PRIMARY: pb.SCHEDULER_ROLE_PRIMARY,
    Role.BACKUP: pb.SCHEDULER_ROLE_BACKUP,
    Role.NONE: pb.SCHEDULER_ROLE_NONE,
}
ROLE_FROM_PB = {v: k for k, v in ROLE_TO_PB.items()}
SERVING_TO_PB = {
    Serving.ENABLED: pb.SERVING_STATE_ENABLED,
    Serving.DISABLED: pb.SERVING_STATE_DISABLED,
    Serving.DRAINING: pb.SERVING_STATE_DRAINING,
}
SERVING_FROM_PB = {v: k for k, v in SERVING_TO_PB.items()}
EVENT_TO_PB = {
    EventType.NODE_JOINED: pb.EVENT_TYPE_NODE_JOINED,
    EventType.NODE_LEFT: pb.EVENT_TYPE_NODE_LEFT,
    EventType.DESIGNATION_CHANGED: pb.EVENT_TYPE_DESIGNATION_CHANGED,
    EventType.SERVICE_APPLIED: pb.EVENT_TYPE_SERVICE_APPLIED,
    EventType.SERVICE_DELETED: pb.EVENT_TYPE_SERVICE_DELETED,
    EventType.LEADER_ELECTED: pb.EVENT_TYPE_LEADER_ELECTED,
    EventType.LEADER_STEPPED_DOWN: pb.EVENT_TYPE_LEADER_STEPPED_DOWN,
    EventType.HANDOVER_STARTED: pb.EVENT_TYPE_HANDOVER_STARTED,
    EventType.HANDOVER_COMPLETED: pb.EVENT_TYPE_HANDOVER_COMPLETED,
    EventType.HANDOVER_ABORTED: pb.EVENT_TYPE_HANDOVER_ABORTED,
    EventType.VALUE_MALFORMED: pb.EVENT_TYPE_VALUE_MALFORMED,
}
EVENT_FROM_PB = {v: k for k, v in EVENT_TO_PB.items()}


def designation_to_pb(d: Designation) -> pb.Designation:
    return pb.Designation(
        node_id=d.node_id,
        role=ROLE_TO_PB[d.role],
        serving=SERVING_TO_PB[d.serving],
        weight=d.weight,
    )


def designation_from_pb(m: pb.Designation) -> Designation:
    return Designation(m.node_id, ROLE_FROM_PB[m.role], SERVING_FROM_PB[m.serving], m.weight)


def registration_to_pb(r: Registration) -> pb.Node:
    return pb.Node(alive=True, **asdict(r))


def node_to_pb(n: Node) -> pb.Node:
    msg = registration_to_pb(n.registration) if n.registration else pb.Node(node_id=n.node_id)
    msg.designation.CopyFrom(designation_to_pb(n.designation))
    if n.health is not None:
        msg.health.CopyFrom(report_to_pb(n.health))
    return msg


def node_from_pb(m: pb.Node) -> Node:
    registration = flat_from_pb(m, Registration) if m.alive else None
    health = report_from_pb(m.health) if m.HasField("health") else None
    return Node(m.node_id, designation_from_pb(m.designation), registration, health)


def pool_to_pb(p: Pool) -> pb.Pool:
    return pb.Pool(all=p.all, nodes=list(p.nodes))


def pool_from_pb(m: pb.Pool) -> Pool:
    return Pool(nodes=tuple(m.nodes), all=m.all)


def _match_to_pb(m: Match) -> pb.Match:
    msg = pb.Match(path_prefix=m.path_prefix, path_regex=m.path_regex, host=m.host)
    if m.header is not None:
        msg.header.CopyFrom(
            pb.HeaderMatch(name=m.header.name, exact=m.header.exact, regex=m.header.regex)
        )
    if m.cookie is not None:
        msg.cookie.CopyFrom(pb.CookieMatch(name=m.cookie.name, value=m.cookie.value))
    return msg


def _match_from_pb(m: pb.Match) -> Match:
    header = (
        HeaderMatch(m.header.name, m.header.exact, m.header.regex) if m.HasField("header") else None
    )
    cookie = CookieMatch(m.cookie.name, m.cookie.value) if m.HasField("cookie") else None
    return Match(m.path_prefix, m.path_regex, m.host, header, cookie)


def service_to_pb(s: ServiceSpec) -> pb.ServiceSpec:
    hc = s.health_check
    return pb.ServiceSpec(
        name=s.name,
        vip=s.vip,
        port=s.port,
        protocol=s.protocol,
        mode=str(s.mode),
        pool=pool_to_pb(s.pool),
        policy=str(s.policy),
        persistence=s.persistence,
        delivery=str(s.delivery),
        target=s.target,
        health_check=pb.HealthCheck(
            type=str(hc.type),
            port=hc.port,
            path=hc.path,
            interval_s=hc.interval_s,
            timeout_s=hc.timeout_s,
            rise=hc.rise,
            fall=hc.fall,
            expect_status=hc.expect_status,
        ),
        rules=[
            pb.Rule(
                name=r.name,
                match=_match_to_pb(r.match),
                pool=pool_to_pb(r.pool),
                policy=str(r.policy) if r.policy else "",
            )
            for r in s.rules
        ],
    )


def service_from_pb(m: pb.ServiceSpec) -> ServiceSpec:
    """Unvalidated: enumerated fields keep whatever string was sent (validate_service checks)."""
    hc = m.health_check
    return ServiceSpec(
        name=m.name,
        vip=m.vip,
        port=m.port,
        protocol=m.protocol,
        mode=m.mode,  # type: ignore[arg-type]  # validated by validate_service
        pool=pool_from_pb(m.pool),
        policy=m.policy,  # type: ignore[arg-type]
        persistence=m.persistence,
        delivery=m.delivery or "splice",  # type: ignore[arg-type]  # validated later
        target=m.target,
        health_check=HealthCheck(
            type=hc.type,  # type: ignore[arg-type]
            port=hc.port,
            path=hc.path,
            interval_s=hc.interval_s,
            timeout_s=hc.timeout_s,
            rise=hc.rise,
            fall=hc.fall,
            expect_status=hc.expect_status,
        ),
        rules=tuple(
            Rule(r.name, _match_from_pb(r.match), pool_from_pb(r.pool), r.policy or None)  # type: ignore[arg-type]
            for r in m.rules
        ),
    )


_Flat = TypeVar("_Flat", LeaderRecord, Handover, VipOwner, Registration, ServiceHealth, LoadReport)


def flat_from_pb(msg: Message, cls: type[_Flat]) -> _Flat:
    """A flat record from a message that has a field of the same name for each of its fields."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        value = getattr(msg, f.name)
        values[f.name] = value if isinstance(value, str | bytes | int | float) else tuple(value)
    return cls(**values)


def leader_to_pb(r: LeaderRecord) -> pb.Leader:
    return pb.Leader(**asdict(r))


def handover_to_pb(h: Handover) -> pb.Handover:
    return pb.Handover(**asdict(h))


def status_to_pb(s: ClusterStatus) -> pb.GetStatusResponse:
    msg = pb.GetStatusResponse(
        answered_by=s.answered_by,
        nodes=[node_to_pb(n) for n in s.nodes],
        services=s.services,
        revision=s.revision,
        etcd_endpoints=list(s.etcd_endpoints),
        vip_owners=[pb.VipOwner(**asdict(o)) for o in s.vip_owners],
        candidates=list(s.candidates),
        malformed_keys=list(s.malformed),
    )
    if s.leader is not None:
        msg.leader.CopyFrom(leader_to_pb(s.leader))
    if s.handover is not None:
        msg.handover.CopyFrom(handover_to_pb(s.handover))
    return msg


def status_from_pb(m: pb.GetStatusResponse) -> ClusterStatus:
    return ClusterStatus(
        m.answered_by,
        tuple(node_from_pb(n) for n in m.nodes),
        m.services,
        m.revision,
        tuple(m.etcd_endpoints),
        leader=flat_from_pb(m.leader, LeaderRecord) if m.HasField("leader") else None,
        vip_owners=tuple(flat_from_pb(o, VipOwner) for o in m.vip_owners),
        candidates=tuple(m.candidates),
        handover=flat_from_pb(m.handover, Handover) if m.HasField("handover") else None,
        malformed=tuple(m.malformed_keys),
    )


def event_to_pb(e: ClusterEvent) -> pb.Event:
    msg = pb.Event(revision=e.revision, type=EVENT_TO_PB[e.type], subject=e.subject)
    if e.registration is not None:
        msg.node.CopyFrom(registration_to_pb(e.registration))
    if e.designation is not None:
        msg.designation.CopyFrom(designation_to_pb(e.designation))
    if e.service is not None:
        msg.service.CopyFrom(service_to_pb(e.service))
    if e.leader is not None:
        msg.leader.CopyFrom(leader_to_pb(e.leader))
    if e.handover is not None:
        msg.handover.CopyFrom(handover_to_pb(e.handover))
    return msg


def event_from_pb(m: pb.Event) -> ClusterEvent:
    return ClusterEvent(
        m.revision,
        EVENT_FROM_PB[m.type],
        m.subject,
        registration=flat_from_pb(m.node, Registration) if m.HasField("node") else None,
        designation=designation_from_pb(m.designation) if m.HasField("designation") else None,
        service=service_from_pb(m.service) if m.HasField("service") else None,
        leader=flat_from_pb(m.leader, LeaderRecord) if m.HasField("leader") else None,
        handover=flat_from_pb(m.handover, Handover) if m.HasField("handover") else None,
    )


def report_to_pb(r: LoadReport) -> pb.LoadReport:
    doc = asdict(r)
    doc["services"] = [pb.ServiceHealth(**s) for s in doc["services"]]
    return pb.LoadReport(**doc)


def report_from_pb(m: pb.LoadReport) -> LoadReport:
    report = flat_from_pb(m, LoadReport)
    return replace(report, services=tuple(flat_from_pb(s, ServiceHealth) for s in m.services))
