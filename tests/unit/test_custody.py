"""VIP custody (cluster/leadership.py): whatever a leader held, even no VIP at all, its holder
hears of the step-down. (A leader of no service yet stepped down without telling its
forwarder, which went on opening the L7 listeners of a leader: every hand-over to that node
then failed with EADDRINUSE, and the failover after it crashed the daemon in a full run.)"""

from __future__ import annotations

import time

from cluster.leadership import LeaderLease, VipCustody
from cluster.store.base import LeaseId


class Holder:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def hold(self, vips: frozenset[str]) -> None:
        self.calls.append(f"hold {sorted(vips)}")

    async def release(self) -> None:
        self.calls.append("release")


def leading() -> LeaderLease:
    lease = LeaderLease(margin_s=0.1)
    lease.take(LeaseId(7), revision=3, term=1, valid_until=time.monotonic() + 10)
    return lease


async def test_a_leader_of_no_vip_still_releases_its_holder() -> None:
    holder = Holder()
    custody = VipCustody(holder, leading())
    await custody.hold(frozenset())
    await custody.release()
    assert holder.calls == ["hold []", "release"]


async def test_vips_are_released_once_and_a_second_release_does_nothing() -> None:
    holder = Holder()
    custody = VipCustody(holder, leading())
    await custody.hold(frozenset({"10.0.100.10"}))
    await custody.release()
    await custody.release()
    assert holder.calls == ["hold ['10.0.100.10']", "release"]


async def test_a_node_that_never_held_never_releases() -> None:
    holder = Holder()
    custody = VipCustody(holder, LeaderLease(margin_s=0.1))  # not leading: hold does nothing
    await custody.hold(frozenset({"10.0.100.10"}))
    await custody.release()
    assert holder.calls == []
