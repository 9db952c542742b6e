"""FakeDatapath: the Datapath protocol in memory, for fast tests of what drives a datapath.

It keeps XdpDatapath's semantics (tests/contract/datapath_cases.py runs one set of cases against
both): apply is whole-state and idempotent; flows pin a connection to a node only when the node
is a server the scheduler tables name (otherwise they are not counted); the flow table has a
limit; `flows(limit)` returns at most `limit`. It records every applied state in `applied`.
"""

from __future__ import annotations

from datapath.protocol import DatapathInfo, DesiredState, Flow

FLOW_LIMIT = 1 << 20  # as the XDP flow map


class FakeDatapath:
    def __init__(self, address: str = "127.0.0.1") -> None:
        self.address = address
        self.state = DesiredState()
        self.applied: list[DesiredState] = []
        self.table: dict[tuple[str, int, str, int], str] = {}
        self.started = False
        self.servers: set[str] = set()  # every node a scheduler table ever named

    async def start(self) -> None:
        self.started = True

    async def apply(self, desired: DesiredState) -> None:
        if desired.scheduler is not None:
            self.servers |= {node for node, _ in desired.scheduler.backends}
        if desired != self.state or not self.applied:
            self.applied.append(desired)
        self.state = desired

    def programmed(self) -> DesiredState:
        return self.state

    def info(self) -> DatapathInfo:
        stats = {"new_flows": len(self.table)}
        return DatapathInfo("fake", "", "", self.address, stats)

    def flows(self, limit: int) -> list[Flow]:
        items = list(self.table.items())[:limit]
        return [Flow(c, cp, v, p, node) for (c, cp, v, p), node in items]

    def flow_count(self) -> int:
        return len(self.table)

    def placed(self) -> dict[tuple[str, int, str], int]:
        return {}  # no packets pass a fake: nothing is ever placed

    def lookup_flow(self, client: str, client_port: int, vip: str, port: int) -> str | None:
        return self.table.get((client, client_port, vip, port))

    async def add_flows(self, flows: list[Flow]) -> int:
        added = 0
        for f in flows:
            if f.node in self.servers and len(self.table) < FLOW_LIMIT:
                self.table[(f.client, f.client_port, f.vip, f.port)] = f.node
                added += 1
        return added

    def remove_flow(self, client: str, client_port: int, vip: str, port: int) -> None:
        self.table.pop((client, client_port, vip, port), None)

    async def close(self) -> None:
        self.started = False
