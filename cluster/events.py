"""Cluster events from etcd watch events: what `clusterctl events` and the SDK stream.

Every stored value goes through the guarded decoder (cluster/snapshot.py): a value that cannot
be read becomes a VALUE_MALFORMED event naming its key, never an exception that ends the stream.
"""

from __future__ import annotations

from cluster.documents import designation_from_doc, record_from_doc
from cluster.keys import Keys, Kind
from cluster.model import ClusterEvent, EventType, Handover, LeaderRecord, Registration
from cluster.snapshot import BAD_VALUE, decode, key_text, parse_service_value
from cluster.store.base import KeyValue, WatchEvent

_HANDOVER = {"started": EventType.HANDOVER_STARTED, "completed": EventType.HANDOVER_COMPLETED}


def event_of(keys: Keys, ev: WatchEvent) -> ClusterEvent | None:
    """The cluster event a change stands for; None when it stands for none."""
    try:
        return _event(keys, ev)
    except BAD_VALUE:
        return ClusterEvent(ev.kv.mod_revision, EventType.VALUE_MALFORMED, key_text(ev.kv.key))


def _leader(kv: KeyValue | None) -> LeaderRecord | None:
    if kv is None:
        return None
    try:
        return record_from_doc(LeaderRecord, decode(kv.value))
    except BAD_VALUE:
        return None


def _event(keys: Keys, ev: WatchEvent) -> ClusterEvent | None:
    rev, deleted = ev.kv.mod_revision, ev.kind == "delete"
    if ev.kv.key == keys.leader:
        old = _leader(ev.prev)
        if deleted:
            return ClusterEvent(
                rev, EventType.LEADER_STEPPED_DOWN, old.node_id if old else "", leader=old
            )
        new = record_from_doc(LeaderRecord, decode(ev.kv.value))
        if old is not None and old.term == new.term:
            return None  # a note update, not a new leader
        return ClusterEvent(rev, EventType.LEADER_ELECTED, new.node_id, leader=new)
    if ev.kv.key == keys.handover and not deleted:
        h = record_from_doc(Handover, decode(ev.kv.value))
        kind = _HANDOVER.get(h.state, EventType.HANDOVER_ABORTED)
        return ClusterEvent(rev, kind, h.to_node, handover=h)
    parsed = keys.parse(ev.kv.key)
    if parsed is None:
        return None
    kind_, name = parsed
    if kind_ == Kind.NODE:
        if deleted:
            return ClusterEvent(rev, EventType.NODE_LEFT, name)
        if ev.kv.version != 1:
            return None
        registration = record_from_doc(Registration, decode(ev.kv.value))
        return ClusterEvent(rev, EventType.NODE_JOINED, name, registration=registration)
    if kind_ == Kind.DESIGNATION and not deleted:
        designation = designation_from_doc(name, decode(ev.kv.value))
        return ClusterEvent(rev, EventType.DESIGNATION_CHANGED, name, designation=designation)
    if kind_ == Kind.SERVICE:
        if deleted:
            return ClusterEvent(rev, EventType.SERVICE_DELETED, name)
        return ClusterEvent(
            rev, EventType.SERVICE_APPLIED, name, service=parse_service_value(ev.kv.value)
        )
    return None
