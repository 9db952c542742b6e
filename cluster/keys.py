"""The etcd key layout, in one place.

Every key lives under a root prefix, `/tcphop/v1/` by default (tests give each case its own):

    nodes/<id>          Registration (JSON), under the node's lease
    designations/<id>   Designation (JSON), persistent; created when a node first registers
    services/<name>     ServiceSpec (JSON), persistent
    candidates/<id>     a primary/backup node ready to lead (JSON), under the node's lease
    leader              LeaderRecord (JSON), under the leader's lease
    leader-beat         the leader's term (ASCII integer), rewritten every beat_s under its lease
                        (cluster/heartbeat.py)
    term                the last leader term (JSON int), persistent
    vips/<address>      VIP owner (JSON), under the leader's lease
    handover            the last planned handover (JSON), persistent
    services-generation bumped by every service write, so a transaction that compares it sees
                        every other service write (VIP:port uniqueness across services)
    health/<id>         the agent's LoadReport summary (JSON), under the node's lease
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DEFAULT_ROOT = "/tcphop/v1/"


class Kind(StrEnum):
    NODE = "nodes"
    DESIGNATION = "designations"
    SERVICE = "services"
    CANDIDATE = "candidates"
    HEALTH = "health"
    VIP = "vips"
    RING = "rings"  # the leader's kernel weights per service: a new leader starts from them


@dataclass(frozen=True, slots=True)
class Keys:
    root: str = DEFAULT_ROOT

    def __post_init__(self) -> None:
        if not (self.root.startswith("/") and self.root.endswith("/")):
            raise ValueError(f"key root must start and end with '/': {self.root!r}")

    def prefix(self, kind: Kind | None = None) -> bytes:
        return (self.root + (f"{kind}/" if kind else "")).encode()

    def node(self, node_id: str) -> bytes:
        return self.prefix(Kind.NODE) + node_id.encode()

    def designation(self, node_id: str) -> bytes:
        return self.prefix(Kind.DESIGNATION) + node_id.encode()

    def service(self, name: str) -> bytes:
        return self.prefix(Kind.SERVICE) + name.encode()

    def candidate(self, node_id: str) -> bytes:
        return self.prefix(Kind.CANDIDATE) + node_id.encode()

    def health(self, node_id: str) -> bytes:
        return self.prefix(Kind.HEALTH) + node_id.encode()

    def vip(self, address: str) -> bytes:
        return self.prefix(Kind.VIP) + address.encode()

    def ring(self, service: str) -> bytes:
        return self.prefix(Kind.RING) + service.encode()

    @property
    def leader(self) -> bytes:
        return self.prefix() + b"leader"

    @property
    def beat(self) -> bytes:
        return self.prefix() + b"leader-beat"

    @property
    def term(self) -> bytes:
        return self.prefix() + b"term"

    @property
    def handover(self) -> bytes:
        return self.prefix() + b"handover"

    @property
    def services_generation(self) -> bytes:
        return self.prefix() + b"services-generation"

    def parse(self, key: bytes) -> tuple[Kind, str] | None:
        """Split a key into its kind and name; None for keys outside the layout.
        UnicodeDecodeError (a ValueError) for a key that is not UTF-8."""
        text = key.decode()
        if not text.startswith(self.root):
            return None
        kind, sep, name = text[len(self.root) :].partition("/")
        if not sep or not name or kind not in Kind.__members__.values():
            return None
        return Kind(kind), name
