"""The one interface between the control plane and a datapath, and the state it programs.

The daemon computes a whole `DesiredState` from etcd and live placement and hands it to
`Datapath.apply`, which makes the node match it (idempotent: applying the same state twice
changes nothing). Every node is a receiver; the leader's state also has `scheduler` tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class VipService:
    name: str
    vip: str
    port: int
    l7: bool
    weights: tuple[tuple[str, int], ...]  # (node, Maglev weight); empty: no server, drop

    @property
    def key(self) -> tuple[str, int]:
        return self.vip, self.port


@dataclass(frozen=True, slots=True)
class SchedulerTables:
    backends: tuple[tuple[str, str], ...]  # (node, address) of every server a ring may name
    services: tuple[VipService, ...]
    # A deposed leader's tables, kept for the stale-ARP window: packets of known flows are
    # forwarded, new connections are dropped (the client's retry reaches the new leader).
    fenced: bool = False
    # False once the L7 listeners are gone (stepped down): a new L7 SYN is dropped, not passed
    # to a stack that would reset it (the client's retry reaches the new leader); other packets
    # still pass, to the connections the listener accepted while leading.
    listening: bool = True


@dataclass(frozen=True, slots=True)
class DesiredState:
    vips: frozenset[str] = frozenset()  # bound on lo: this node serves them
    trusted: frozenset[str] = frozenset()  # scheduler addresses whose encapsulation is accepted
    scheduler: SchedulerTables | None = None  # None: this node does not schedule
    # VIP:ports of the L7 services: a new SYN handed here that finds no socket goes back to the
    # scheduler (its flow is stale: the connection was reset from this side), never refused.
    handed: frozenset[tuple[str, int]] = frozenset()


@dataclass(frozen=True, slots=True)
class Flow:
    client: str
    client_port: int
    vip: str
    port: int
    node: str  # the server the connection is pinned to ("" when its address is unknown)


@dataclass(frozen=True, slots=True)
class DatapathInfo:
    kind: str
    interface: str
    mode: str
    address: str
    stats: dict[str, int] = field(default_factory=dict)


class Datapath(Protocol):
    async def start(self) -> None:
        """Load and attach; reuse state a previous process left (pinned maps, flows)."""
        ...

    async def apply(self, desired: DesiredState) -> None:
        """Make the node match `desired`."""
        ...

    def programmed(self) -> DesiredState:
        """What the last successful apply programmed."""
        ...

    def info(self) -> DatapathInfo:
        """Kind, interface, mode and counters by reason."""
        ...

    def flows(self, limit: int) -> list[Flow]: ...

    def flow_count(self) -> int:
        """Flows in the table (a walk of the table: call it off the event loop)."""
        ...

    def placed(self) -> dict[tuple[str, int, str], int]:
        """(VIP, port, server node) -> new connections this node placed there, since its maps
        were created (they survive restarts). A server not in the tables shows by address."""
        ...

    def lookup_flow(self, client: str, client_port: int, vip: str, port: int) -> str | None:
        """The node a connection is pinned to, or None."""
        ...

    async def add_flows(self, flows: list[Flow]) -> int:
        """Pin connections to nodes (the L7 handoff, a new leader's recovery); return how many."""
        ...

    def remove_flow(self, client: str, client_port: int, vip: str, port: int) -> None: ...

    async def close(self) -> None:
        """Let go of this process's handles. The datapath stays attached and its maps pinned,
        so a restarted daemon finds every flow (a restart must not break connections)."""
        ...
