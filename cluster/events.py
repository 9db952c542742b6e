"""Cluster events from etcd watch events: what `clusterctl events` and the SDK stream.

Every value is read by the snapshot's readers (cluster/snapshot.py): a value that cannot be read
becomes a VALUE_MALFORMED event naming its key, never an exception that ends the stream.
"""

from __future__ import annotations

from typing import cast

from cluster.keys import Keys, Kind
from cluster.model import (
    ClusterEvent,
    Designation,
    EventType,
    Handover,
    LeaderRecord,
    Registration,
    ServiceSpec,
)
from cluster.snapshot import BAD_VALUE, key_text, read_record, read_value
from cluster.store.base import KeyValue, WatchEvent

_HANDOVER = {"started": EventType.HANDOVER_STARTED, "completed": EventType.HANDOVER_COMPLETED}


def event_of(keys: Keys, ev: WatchEvent) -> ClusterEvent | None:
    """The cluster event a change stands for; None when it stands for none."""
    try:
        return _event(keys, ev)
    except BAD_VALUE:
        return ClusterEvent(ev.kv.mod_revision, EventType.VALUE_MALFORMED, key_text(ev.kv.key))


def _previous_leader(kv: KeyValue | None) -> LeaderRecord | None:
    try:
        return read_record(LeaderRecord, kv.value) if kv is not None else None
    except BAD_VALUE:
        return None  # the value before may have been the garbage this change replaced


def _event(keys: Keys, ev: WatchEvent) -> ClusterEvent | None:
    rev, deleted = ev.kv.mod_revision, ev.kind == "delete"
    if ev.kv.key == keys.leader:
        old = _previous_leader(ev.prev)
        if deleted:
            return ClusterEvent(
                rev, EventType.LEADER_STEPPED_DOWN, old.node_id if old else "", leader=old
            )
        new = read_record(LeaderRecord, ev.kv.value)
        if old is not None and old.term == new.term:
            return None  # a note update, not a new leader
        return ClusterEvent(rev, EventType.LEADER_ELECTED, new.node_id, leader=new)
    if ev.kv.key == keys.handover and not deleted:
        h = read_record(Handover, ev.kv.value)
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
        registration = cast(Registration, read_value(kind_, name, ev.kv.value))
        return ClusterEvent(rev, EventType.NODE_JOINED, name, registration=registration)
    if kind_ == Kind.DESIGNATION and not deleted:
        designation = cast(Designation, read_value(kind_, name, ev.kv.value))
        return ClusterEvent(rev, EventType.DESIGNATION_CHANGED, name, designation=designation)
    if kind_ == Kind.SERVICE:
        if deleted:
            return ClusterEvent(rev, EventType.SERVICE_DELETED, name)
        service = cast(ServiceSpec, read_value(kind_, name, ev.kv.value))
        return ClusterEvent(rev, EventType.SERVICE_APPLIED, name, service=service)
    return None
