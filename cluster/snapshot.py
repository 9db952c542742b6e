"""One consistent read of the key space, decoded by one guarded reader.

Everything stored in etcd is untrusted input: an operator's hand-made write, a bug, or an
attacker who reached etcd. `read_snapshot` decodes every value through `guarded()`: a value that
is not UTF-8 JSON of the expected shape, is larger than MAX_VALUE_BYTES, nests too deep, or sits
under a key that is not UTF-8 is skipped, listed in `Snapshot.malformed` (shown by `clusterctl
status`) and logged once per key. Nothing read from etcd raises out of here.

A leader key that cannot be decoded, or that no lease holds (a lease-bound key goes with its
lease; one without a lease never expires), counts as vacant: `leader` is None and
`vacant_leader_mod` is its mod revision, which a candidate's replacing transaction compares.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from cluster.documents import (
    designation_from_doc,
    record_from_doc,
    report_from_doc,
    service_from_doc,
)
from cluster.errors import ValidationError
from cluster.keys import Keys, Kind
from cluster.limits import MAX_RING_NODES, MAX_RING_WEIGHT, MAX_SPEC_BYTES, MAX_VALUE_BYTES
from cluster.model import (
    Designation,
    Handover,
    LeaderRecord,
    LoadReport,
    Mode,
    Node,
    Registration,
    Role,
    ServiceSpec,
    VipOwner,
)
from cluster.store.base import KeyValue
from cluster.validation import announce_problems, report_problems, validate_node_id

log = structlog.get_logger()
_T = TypeVar("_T")
# What a hostile value can raise while being decoded (UnicodeDecodeError is a ValueError; deep
# JSON raises RecursionError).
BAD_VALUE = (ValueError, TypeError, KeyError, ValidationError, RecursionError)
_reported: set[str] = set()  # keys already logged as malformed (once each per process)


def encode(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode(value: bytes, limit: int = MAX_VALUE_BYTES) -> dict[str, object]:
    """A JSON object from a stored value; ValueError when it is not one (or is too large)."""
    if len(value) > limit:
        raise ValueError(f"{len(value)} bytes, more than {limit}")
    try:
        doc = json.loads(value)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {value[:60]!r}")
    return doc


def key_text(key: bytes) -> str:
    return key.decode(errors="backslashreplace")


def guarded(read: Callable[[], _T], key: bytes, malformed: list[str]) -> _T | None:
    """read(), or None with the key listed and logged (once) when the value is malformed."""
    try:
        return read()
    except BAD_VALUE as e:
        text = key_text(key)
        malformed.append(text)
        if text not in _reported and len(_reported) < 10_000:
            _reported.add(text)
            log.warning("stored_value_skipped", key=text, reason=str(e)[:200])
        return None


@functools.lru_cache(maxsize=1024)
def parse_service_value(value: bytes) -> ServiceSpec:
    """Parsing and validating a spec is the costly part of a snapshot, and every node takes a
    snapshot every TTL/5: parse each stored value once (specs are immutable)."""
    return service_from_doc(decode(value, MAX_SPEC_BYTES))


_READERS: dict[Kind, Callable[[str, bytes], object]] = {
    Kind.NODE: lambda name, v: _registration(name, v),
    Kind.DESIGNATION: lambda name, v: designation_from_doc(name, decode(v)),
    Kind.SERVICE: lambda _, v: parse_service_value(v),
    Kind.CANDIDATE: lambda _, v: True,
    Kind.VIP: lambda _, v: record_from_doc(VipOwner, decode(v)),
    Kind.HEALTH: lambda name, v: _report(name, v),
    Kind.RING: lambda _, v: ring_from_doc(decode(v)),
}


def read_value(kind: Kind, name: str, value: bytes) -> object:
    """The value stored under `kind`/`name`; raises one of BAD_VALUE when it is malformed."""
    return _READERS[kind](name, value)


_R = TypeVar("_R", LeaderRecord, Handover)


def read_record(cls: type[_R], value: bytes) -> _R:
    """A leader or handover record; raises one of BAD_VALUE when it is malformed."""
    return record_from_doc(cls, decode(value))


def read_leader(kv: KeyValue, malformed: list[str]) -> LeaderRecord | None:
    """The leader the key names; None when it is unreadable or no lease holds it (a key that
    would never expire): then it is listed in `malformed` and counts as vacant."""
    leader = guarded(lambda: read_record(LeaderRecord, kv.value), kv.key, malformed)
    if leader is not None and kv.lease:
        return leader
    if key_text(kv.key) not in malformed:
        malformed.append(key_text(kv.key))
    return None


def _registration(name: str, value: bytes) -> Registration:
    registration = record_from_doc(Registration, decode(value))
    problems = announce_problems(list(registration.announces))
    if problems:
        raise ValidationError(problems)
    if registration.node_id != name:
        raise ValueError(f"node_id: {registration.node_id!r} stored under {name!r}")
    return registration


def _report(name: str, value: bytes) -> LoadReport:
    report = report_from_doc(decode(value))
    problems = report_problems(report)
    if report.node_id != name:
        problems.append(f"node_id: {report.node_id!r} stored under {name!r}")
    if problems:
        raise ValidationError(problems)
    return report


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything under the key root at one revision."""

    revision: int
    registrations: dict[str, Registration]
    designations: dict[str, Designation]
    designation_revisions: dict[str, int]
    ready: frozenset[str]  # alive candidates
    services: dict[str, ServiceSpec]
    service_revisions: dict[str, int]
    leader: LeaderRecord | None
    leader_revision: int  # the leader key's create revision (the fencing token); 0: none
    leader_lease: int
    term: int
    term_mod_revision: int
    owners: dict[str, VipOwner]
    handover: Handover | None
    malformed: tuple[str, ...] = ()  # keys whose values could not be read; they are ignored
    health: dict[str, LoadReport] = field(default_factory=dict)
    vacant_leader_mod: int = 0  # mod revision of an unusable leader key to replace; 0: none
    services_generation: int = 0  # mod revision of the services generation key (0: absent)
    rings: dict[str, dict[str, int]] = field(default_factory=dict)  # the last leader's weights
    beat_term: int = 0  # the term of the leader's last heartbeat (cluster/heartbeat.py); 0: none
    beat_revision: int = 0  # its mod revision

    @property
    def alive(self) -> frozenset[str]:
        return frozenset(self.registrations)

    @property
    def vips(self) -> frozenset[str]:
        return frozenset(s.vip for s in self.services.values())

    @property
    def l7_endpoints(self) -> frozenset[tuple[str, int]]:
        """(VIP, port) of every L7 service: the leader listens there, every node adopts there."""
        return frozenset((s.vip, s.port) for s in self.services.values() if s.mode == Mode.L7)

    def role(self, node_id: str) -> Role:
        return self.designations.get(node_id, Designation(node_id)).role

    def unannounceable(self, node_id: str) -> list[str]:
        """The service VIPs a registered node could not announce if it led (--announce)."""
        registration = self.registrations.get(node_id)
        if registration is None:
            return []
        return sorted(v for v in self.vips if not registration.can_announce(v))

    def nodes(self) -> list[Node]:
        """Every node that ever registered (or was force-designated), sorted by id."""
        ids = sorted(self.designations.keys() | self.registrations.keys())
        return [
            Node(
                n,
                self.designations.get(n, Designation(n)),
                self.registrations.get(n),
                self.health.get(n),
            )
            for n in ids
        ]


def read_snapshot(kvs: list[KeyValue], revision: int, keys: Keys) -> Snapshot:
    """Parse one range read of the key root. Unreadable values are skipped and listed."""
    values: dict[Kind, dict[str, Any]] = {kind: {} for kind in _READERS}
    revs: dict[Kind, dict[str, int]] = {kind: {} for kind in _READERS}
    singles: dict[bytes, KeyValue] = {}
    malformed: list[str] = []
    for kv in kvs:
        parsed = guarded(functools.partial(keys.parse, kv.key), kv.key, malformed)
        if parsed is None:
            singles[kv.key] = kv
            continue
        kind, name = parsed
        value = guarded(functools.partial(read_value, kind, name, kv.value), kv.key, malformed)
        if value is not None:
            values[kind][name] = value
            revs[kind][name] = kv.mod_revision
    leader_kv = singles.get(keys.leader)
    leader = read_leader(leader_kv, malformed) if leader_kv else None
    vacant = leader_kv.mod_revision if leader_kv and leader is None else 0
    term_kv = singles.get(keys.term)
    term = guarded(lambda: _term(term_kv), keys.term, malformed) if term_kv else 0
    generation = singles.get(keys.services_generation)
    beat_kv = singles.get(keys.beat)
    beat_term = guarded(lambda: _term(beat_kv), keys.beat, malformed) if beat_kv else 0
    registrations = values[Kind.NODE]
    return Snapshot(
        revision,
        registrations,
        values[Kind.DESIGNATION],
        revs[Kind.DESIGNATION],
        frozenset(values[Kind.CANDIDATE].keys() & registrations.keys()),
        values[Kind.SERVICE],
        revs[Kind.SERVICE],
        leader,
        leader_kv.create_revision if leader is not None and leader_kv else 0,
        leader_kv.lease if leader is not None and leader_kv else 0,
        term or 0,
        term_kv.mod_revision if term_kv else 0,
        values[Kind.VIP],
        _handover(singles.get(keys.handover), malformed),
        tuple(malformed),
        values[Kind.HEALTH],
        vacant,
        generation.mod_revision if generation else 0,
        values[Kind.RING],
        beat_term or 0,
        beat_kv.mod_revision if beat_kv and beat_term else 0,
    )


def ring_from_doc(doc: dict[str, object]) -> dict[str, int]:
    """{"weights": {node: weight}}: node ids as registered, weights 1..MAX_RING_WEIGHT."""
    weights = doc.get("weights")
    if not isinstance(weights, dict) or len(weights) > MAX_RING_NODES:
        raise ValueError(f"weights: not a map of at most {MAX_RING_NODES} nodes")
    for node, weight in weights.items():
        validate_node_id(node, "weights")
        if type(weight) is not int or not 1 <= weight <= MAX_RING_WEIGHT:
            raise ValueError(
                f"weights.{node}: {weight!r} is not an integer in 1..{MAX_RING_WEIGHT}"
            )
    return dict(weights)


def _term(kv: KeyValue | None) -> int:
    assert kv is not None
    term = int(kv.value.decode("ascii"))
    if not 0 <= term < 1 << 62:
        raise ValueError(f"term {term} is out of range")
    return term


def _handover(kv: KeyValue | None, malformed: list[str]) -> Handover | None:
    if kv is None:
        return None
    return guarded(lambda: read_record(Handover, kv.value), kv.key, malformed)
