"""Failover benchmark: kill -9 of the leader, and planned handover, on real interfaces.

    sudo .venv/bin/python bench/failover.py [--trials 10]

Builds a LAN of network namespaces (etcd + 3 tcphopd with --uplink eth0 --leader-ttl 1), puts a
service's VIP on it, and samples continuously, every few milliseconds, which nodes answer ARP
for the VIP (from the root namespace's port on the LAN). For each trial it prints:
time to a new leader (etcd's leader key, read through the SDK) and time until the new leader
answers for the VIP; and over the whole run, the number of samples in which two nodes answered
(must be 0). Prints one table; the README keeps the latest.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from cluster.sdk import ClusterClient, Role, ServiceSpec
from lab.netcluster import NetCluster
from lab.netns import NetLab, netns_available


class Sampler(threading.Thread):
    """Who answers ARP for the VIP, sampled back to back in a thread of its own."""

    def __init__(self, cluster: NetCluster, vip: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.vip = cluster, vip
        self.samples: list[tuple[float, frozenset[str]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            holders = frozenset(self.cluster.holders(self.vip, timeout_s=0.01))
            self.samples.append((time.monotonic(), holders))

    def first(self, after: float, node: str) -> float:
        """When `node` alone first answered after `after` (waits for it)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for t, holders in list(self.samples):
                if t > after and holders == {node}:
                    return t
            time.sleep(0.01)
        raise TimeoutError(f"{node} never answered for {self.vip}")


async def leader(client: ClusterClient) -> str | None:
    st = await client.status()
    return st.leader.node_id if st.leader else None


async def wait_leader(
    client: ClusterClient,
    not_node: str | None = None,
    node: str | None = None,
    timeout_s: float = 15,
) -> tuple[str, float]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            current = await leader(client)
        except Exception:  # noqa: BLE001 - a node being killed; try the next poll
            current = None
        if current and current != not_node and (node is None or current == node):
            return current, time.monotonic()
        await asyncio.sleep(0.005)
    raise TimeoutError("no new leader")


async def trials(cluster: NetCluster, sampler: Sampler, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {
        k: [] for k in ("kill_leader", "kill_vip", "planned_leader", "planned_vip")
    }
    async with ClusterClient(cluster.endpoints, timeout_s=2, tls=cluster.admin_tls) as client:
        for _ in range(n):
            old, _ = await wait_leader(client, node="n1")
            sampler.first(time.monotonic() - 0.5, "n1")
            t0 = time.monotonic()
            cluster.daemons[old].kill()
            new, t_leader = await wait_leader(client, not_node=old)
            out["kill_leader"].append(t_leader - t0)
            out["kill_vip"].append(sampler.first(t0, new) - t0)
            cluster.daemons[old].wait()
            cluster.start(int(old[1]))
            await wait_leader(client, node="n1")  # fails back after the preempt delay
            sampler.first(time.monotonic(), "n1")
            for target in ("n2", "n1"):
                t0 = time.monotonic()
                await client.designate(target, Role.PRIMARY)
                _, t_leader = await wait_leader(client, node=target)
                out["planned_leader"].append(t_leader - t0)
                out["planned_vip"].append(sampler.first(t0, target) - t0)
    return out


def row(name: str, values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return (
        f"| {name} | {len(values)} | {statistics.median(values) * 1000:.0f} | "
        f"{p95 * 1000:.0f} | {values[-1] * 1000:.0f} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    ok, why = netns_available()
    if not ok:
        raise SystemExit(f"needs root and network namespaces: {why}")
    with tempfile.TemporaryDirectory(prefix="tcphop-bench-") as tmp:
        cluster = NetCluster.up(NetLab(3), Path(tmp))
        try:
            for i in (1, 2, 3):
                cluster.start(i)
            vip = cluster.lab.vip()
            async with ClusterClient(
                cluster.endpoints, timeout_s=3, tls=cluster.admin_tls
            ) as client:
                await client.designate("n1", Role.PRIMARY)
                await client.designate("n2", Role.BACKUP)
                await client.apply_service(ServiceSpec("web", vip, 80))
            sampler = Sampler(cluster, vip)
            sampler.start()
            results = await trials(cluster, sampler, args.trials)
            sampler.stop.set()
            sampler.join()
        finally:
            cluster.down()
    doubles = sum(1 for _, h in sampler.samples if len(h) > 1)
    print(
        f"tcphop failover, {args.trials} trials, leader TTL 1 s, etcd heartbeat 25 ms / "
        f"election 250 ms, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}\n"
    )
    print("| what | n | p50 ms | p95 ms | max ms |\n|---|---|---|---|---|")
    print(row("kill -9 leader: new leader elected", results["kill_leader"]))
    print(row("kill -9 leader: VIP answered by the new leader", results["kill_vip"]))
    print(row("planned handover: new leader elected", results["planned_leader"]))
    print(row("planned handover: VIP answered by the new leader", results["planned_vip"]))
    span = sampler.samples[-1][0] - sampler.samples[0][0]
    print(
        f"\nARP samples: {len(sampler.samples)} (one every {1000 * span / len(sampler.samples):.0f}"
        f" ms on average), with two VIP holders: {doubles}"
    )


if __name__ == "__main__":
    asyncio.run(main())
