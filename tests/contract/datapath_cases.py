"""The Datapath contract as plain async cases, run against FakeDatapath in-process
(test_datapath_contract.py) and against XdpDatapath on a real interface in a network namespace
(the same module, run there by a subprocess)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from datapath.protocol import Datapath, DesiredState, Flow, SchedulerTables, VipService

VIP = "10.149.100.1"
CLIENT = "192.0.2.7"


def state(address: str) -> DesiredState:
    web = VipService("web", VIP, 80, False, (("n1", 100),))
    tables = SchedulerTables((("n1", address),), (web,))
    return DesiredState(frozenset({VIP}), frozenset({address}), tables)


async def apply_is_whole_state_and_idempotent(dp: Datapath, address: str) -> None:
    await dp.apply(state(address))
    await dp.apply(state(address))
    assert dp.programmed() == state(address)


async def flows_pin_only_to_servers_the_tables_name(dp: Datapath, address: str) -> None:
    await dp.apply(state(address))
    assert await dp.add_flows([Flow(CLIENT, 40000, VIP, 80, "n1")]) == 1
    assert await dp.add_flows([Flow(CLIENT, 40001, VIP, 80, "ghost")]) == 0
    assert dp.lookup_flow(CLIENT, 40000, VIP, 80) == "n1"
    assert dp.lookup_flow(CLIENT, 40001, VIP, 80) is None


async def a_removed_flow_is_gone_and_removing_twice_is_fine(dp: Datapath, address: str) -> None:
    await dp.apply(state(address))
    await dp.add_flows([Flow(CLIENT, 40002, VIP, 80, "n1")])
    dp.remove_flow(CLIENT, 40002, VIP, 80)
    dp.remove_flow(CLIENT, 40002, VIP, 80)
    assert dp.lookup_flow(CLIENT, 40002, VIP, 80) is None


async def listing_flows_respects_the_limit(dp: Datapath, address: str) -> None:
    await dp.apply(state(address))
    await dp.add_flows([Flow(CLIENT, 41000 + i, VIP, 80, "n1") for i in range(5)])
    assert len(dp.flows(3)) == 3
    assert {f.node for f in dp.flows(100)} == {"n1"}


async def flows_added_are_counted_but_not_placed(dp: Datapath, address: str) -> None:
    """Flows the control plane adds (a new leader's recovery) are not new connections."""
    await dp.apply(state(address))
    before = dp.flow_count()
    await dp.add_flows([Flow(CLIENT, 42000 + i, VIP, 80, "n1") for i in range(3)])
    assert dp.flow_count() == before + 3
    assert dp.placed() == {}


async def info_names_the_kind_and_counts(dp: Datapath, address: str) -> None:
    info = dp.info()
    assert info.kind and info.address == address
    assert all(isinstance(v, int) and v >= 0 for v in info.stats.values())


CASES: list[Callable[[Datapath, str], Awaitable[None]]] = [
    apply_is_whole_state_and_idempotent,
    flows_pin_only_to_servers_the_tables_name,
    a_removed_flow_is_gone_and_removing_twice_is_fine,
    listing_flows_respects_the_limit,
    flows_added_are_counted_but_not_placed,
    info_names_the_kind_and_counts,
]


async def run_against_xdp(address: str, pins: Path) -> dict[str, str]:
    """Every case against a fresh XdpDatapath on eth0 (in the caller's namespace)."""
    from datapath.xdp import XdpDatapath

    results = {}
    for i, case in enumerate(CASES):
        dp = XdpDatapath("eth0", address, pins / f"c{i}", generic=True)
        await dp.start()
        try:
            await case(dp, address)
            results[case.__name__] = "ok"
        except AssertionError as e:
            results[case.__name__] = f"failed: {e!r}"
        finally:
            await dp.teardown()
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run_against_xdp(sys.argv[1], Path(sys.argv[2])))))
