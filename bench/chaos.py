"""The chaos suite: faults injected one at a time into a running lab under load.

    ./run.sh chaos [--trials 3] [--timing-trials 10] [--only NAME ...]

Builds a lab (4 nodes in two subnets, a 3-member etcd, TLS), applies the L4 and L7 sample
services, and for every trial runs, from the client namespace, three long rate-limited
downloads checked byte for byte (SHA-256), a new connection every 20 ms and an L7 request
every 40 ms (lab/traffic.py), while the router's namespace watches who answers ARP for the VIP
(lab/arpwatch.py). One fault is injected 1 s in and undone after its hold; the lab is then let
settle (n1 leads again, every node alive) before the next trial. Per fault it prints: trials,
established connections lost, the new-connection outage (the longest run of failed probes,
p50 / p95 / max), L7 requests failed, the time from the fault to a single new VIP owner, and
samples in which two nodes answered ARP for the VIP (must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.sdk import ClusterClient, Role
from lab import faults
from lab import lifecycle as lab
from lab.state import LabState

BEFORE_S, AFTER_S = 1.0, 3.0


@dataclass
class Fault:
    inject: Callable[[LabState], float | None]
    undo: Callable[[LabState], None]
    hold_s: float = 3.0
    timing: bool = False  # a takeover time goal rests on it: run --timing-trials
    trials: int | None = None  # fixed (the 60 s quorum loss)


def sdk(state: LabState, op: Callable[[ClusterClient], Any]) -> Any:
    async def run() -> Any:
        async with ClusterClient(state.endpoints, timeout_s=3, tls=state.admin_tls()) as c:
            return await op(c)

    return asyncio.run(run())


def designate(state: LabState, primary: str, backup: str) -> None:
    async def go(c: ClusterClient) -> None:
        await c.designate(backup, Role.BACKUP)
        await c.designate(primary, Role.PRIMARY)

    sdk(state, go)


def handover(state: LabState) -> float:
    """What an operator types: `clusterctl designate n2 primary` (n1 becomes the backup in the same
    transaction). The fault's time is the RPC's, after the client's TLS handshake."""

    async def go(c: ClusterClient) -> float:
        sent = time.time()
        await c.designate("n2", Role.PRIMARY)
        return sent

    return float(sdk(state, go))


def storm(state: LabState) -> None:
    for k in range(10):
        designate(state, *(("n2", "n1") if k % 2 == 0 else ("n1", "n2")))
        time.sleep(0.5)


def etcd_follower(state: LabState) -> int:
    return next(k for k in (1, 2, 3) if k != faults.etcd_leader(state))


def quorum_loss(state: LabState) -> None:
    lost = [k for k in (1, 2, 3) if k != faults.etcd_leader(state)]
    for k in lost:
        faults.kill_etcd(state, k)


def restart_etcd_members(state: LabState) -> None:
    for k in (1, 2, 3):
        faults.restart_etcd(state, k)


def _faults() -> dict[str, Fault]:
    kill, cont, stop = signal.SIGKILL, signal.SIGCONT, signal.SIGSTOP
    chosen: dict[str, int] = {}
    return {
        "leader SIGKILL": Fault(lambda s: faults.signal_node(s, "n1", kill),
                                lambda s: faults.restart_node(s, "n1"), timing=True),
        "leader SIGSTOP (hung)": Fault(lambda s: faults.signal_node(s, "n1", stop),
                                       lambda s: faults.signal_node(s, "n1", cont), timing=True),
        "planned handover": Fault(handover, lambda s: None, timing=True),
        "leader cut from etcd": Fault(lambda s: faults.cut(s, "n1", etcd_only=True),
                                      lambda s: faults.heal(s, "n1"), hold_s=4.0),
        "leader cut from the router": Fault(lambda s: faults.cut(s, "n1", etcd_only=False),
                                            lambda s: faults.heal(s, "n1"), hold_s=4.0),
        "backup SIGKILL": Fault(lambda s: faults.signal_node(s, "n2", kill),
                                lambda s: faults.restart_node(s, "n2")),
        "server SIGKILL": Fault(lambda s: faults.signal_node(s, "n3", kill),
                                lambda s: faults.restart_node(s, "n3")),
        "server SIGSTOP": Fault(lambda s: faults.signal_node(s, "n3", stop),
                                lambda s: faults.signal_node(s, "n3", cont)),
        "etcd member SIGKILL": Fault(
            lambda s: faults.kill_etcd(s, chosen.setdefault("m", etcd_follower(s))),
            lambda s: faults.restart_etcd(s, chosen.pop("m"))),
        "etcd leader SIGKILL": Fault(
            lambda s: faults.kill_etcd(s, chosen.setdefault("l", faults.etcd_leader(s))),
            lambda s: faults.restart_etcd(s, chosen.pop("l"))),
        "etcd quorum lost 60 s": Fault(quorum_loss, restart_etcd_members, hold_s=60.0, trials=1),
        "designation storm": Fault(storm, lambda s: designate(s, "n1", "n2"), hold_s=0.5),
        "gratuitous ARPs lost + leader SIGKILL": Fault(kill_unannounced, restart_announced),
    }  # fmt: skip


def kill_unannounced(state: LabState) -> None:
    faults.drop_gratuitous_arp(state, True)
    faults.signal_node(state, "n1", signal.SIGKILL)


def restart_announced(state: LabState) -> None:
    faults.restart_node(state, "n1")
    faults.drop_gratuitous_arp(state, False)


@dataclass
class Trial:
    lost: int = 0
    downloads: int = 0
    outage_s: float = 0.0
    l7_failed: int = 0
    owner_s: float | None = None
    doubles: int = 0
    errors: list[str] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)  # L7, for the log
    refused: list[tuple[float, str]] = field(default_factory=list)  # new connections, for the log


def run_trial(state: LabState, fault: Fault, l7_port: int) -> Trial:
    net = state.lab
    seconds = BEFORE_S + fault.hold_s + AFTER_S
    arp = subprocess.Popen(
        net.exec(net.ns("r"), sys.executable, "-m", "lab.arpwatch", "--ifname", "br2",
                 "--vip", state.vip), stdout=subprocess.PIPE, text=True)  # fmt: skip
    traffic = subprocess.Popen(
        net.exec(net.ns("c"), sys.executable, "-m", "lab.traffic", "--vip", state.vip,
                 "--l7-port", str(l7_port), "--seconds", str(seconds),
                 "--size", str(int(seconds * 1.2 * 2**20)), "--rate", str(2**20)),
        stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        time.sleep(BEFORE_S)
        at = time.time()
        at = fault.inject(state) or at  # a fault may say when it took effect
        time.sleep(fault.hold_s)
        fault.undo(state)
        out, _ = traffic.communicate(timeout=seconds + 60)
    finally:  # a fault that fails must not leave the watchers running
        traffic.kill()
        arp.send_signal(signal.SIGTERM)
        watched, _ = arp.communicate(timeout=10)
    return measure(json.loads(out), [json.loads(line) for line in watched.splitlines()], at)


def measure(load: dict[str, Any], arp: list[dict[str, Any]], at: float) -> Trial:
    t = Trial(downloads=len(load["downloads"]))
    t.errors = [f"{d['error']} (served by {d['server'] or '?'})" for d in load["downloads"]
                if not d["ok"]]  # fmt: skip
    t.lost = len(t.errors)
    t.outage_s = longest_failure(load["probes"])
    t.l7_failed = sum(1 for p in load.get("l7", []) if not p[1])
    t.failures = [(round(p[0] - at, 2), p[2]) for p in load.get("l7", []) if not p[1]]
    t.refused = [(round(p[0] - at, 2), p[2]) for p in load["probes"] if not p[1]]
    t.doubles = sum(1 for a in arp if len(a["macs"]) > 1)
    before = [a["macs"] for a in arp if a["t"] <= at]
    owner = before[-1] if before else []
    moved = [a for a in arp if a["t"] > at and len(a["macs"]) == 1 and a["macs"] != owner]
    t.owner_s = moved[0]["t"] - at if moved else None
    return t


def longest_failure(probes: list[list[Any]]) -> float:
    """The longest stretch from a failed probe's start to the next successful probe's start."""
    longest, first_failed = 0.0, None
    for started, ok, _ in probes:
        if not ok and first_failed is None:
            first_failed = started
        elif ok and first_failed is not None:
            longest, first_failed = max(longest, started - first_failed), None
    if first_failed is not None:
        longest = max(longest, probes[-1][0] - first_failed)
    return longest


def settle(state: LabState, timeout_s: float = 30.0) -> None:
    """Back to the starting point: roles n1 primary / n2 backup, every node alive, n1 leads."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            designate(state, "n1", "n2")
            st = sdk(state, lambda c: c.status())
            if st.leader and st.leader.node_id == "n1" and all(n.alive for n in st.nodes):
                time.sleep(1.0)  # the agents' first reports to the new leader
                return
        except Exception:  # noqa: BLE001 - the cluster may still be recovering
            pass
        time.sleep(0.2)
    raise RuntimeError("the lab did not settle (n1 leading, all nodes alive) within 30 s")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def row(name: str, trials: list[Trial]) -> str:
    outages = [1000 * t.outage_s for t in trials]
    owners = [1000 * t.owner_s for t in trials if t.owner_s is not None]
    lost = sum(t.lost for t in trials)
    owner = f"{statistics.median(owners):.0f} / {max(owners):.0f}" if owners else "-"
    return (f"| {name} | {len(trials)} | {lost} of {sum(t.downloads for t in trials)} | "
            f"{pct(outages, 0.5):.0f} / {pct(outages, 0.95):.0f} / {max(outages):.0f} | "
            f"{sum(t.l7_failed for t in trials)} | {owner} | "
            f"{sum(t.doubles for t in trials)} |")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--timing-trials", type=int, default=10)
    p.add_argument("--only", nargs="*", default=None, help="fault names (see the table)")
    p.add_argument("--keep-logs", type=Path, help="copy the lab's logs here before it goes")
    a = p.parse_args()
    chosen = {n: f for n, f in _faults().items() if not a.only or n in a.only}
    where = Path(tempfile.mkdtemp(prefix="tcphop-chaos-")) / "lab"
    state = lab.up(where, 4, "generic", True, lambda line: None, etcd_members=3)
    rows = []
    try:
        settle(state)
        sdk(state, lambda c: c.apply_services([lab.sample_service(state),
                                               lab.sample_l7_service(state)]))  # fmt: skip
        time.sleep(3)
        for name, fault in chosen.items():
            n = fault.trials or (a.timing_trials if fault.timing else a.trials)
            trials = []
            for _ in range(n):
                trials.append(run_trial(state, fault, lab.APP_PORT))
                settle(state)
            for t in trials:
                for e in t.errors:
                    sys.stderr.write(f"{name}: download lost: {e}\n")
                if t.failures:
                    sys.stderr.write(f"{name}: L7 failed at (s after the fault): {t.failures}\n")
                if t.refused:
                    sys.stderr.write(f"{name}: new connections failed at: {t.refused}\n")
            rows.append(row(name, trials))
            sys.stderr.write(rows[-1] + "\n")
    finally:
        if a.keep_logs:
            shutil.copytree(where / "logs", a.keep_logs, dirs_exist_ok=True)
        lab.down(where)
        where.parent.rmdir()
    print(
        "| fault | trials | established conns lost | new-conn outage ms p50 / p95 / max "
        "| L7 requests failed | new VIP owner after ms p50 / max | double ARP owners |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
