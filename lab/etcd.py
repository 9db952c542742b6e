"""The lab's etcd: one member on the router (the quick default), or a real cluster of 3 or 5
members, each in its own namespace on the router's br5 with its own address, so that a member,
the etcd leader or the quorum can be lost (the chaos suite, bench/chaos.py).

Timings (cluster/store/embedded.py): heartbeat 25 ms, election timeout 250 ms, so a 1 s lease is
granted as 1 s and a lost etcd leader is replaced within about 0.5 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from cluster.store.embedded import EmbeddedEtcd, etcd_binary
from cluster.tls import TlsFiles
from lab.netns import RoutedLab
from lab.state import LabProcess, LabState

CLIENT_PORT, PEER_PORT = 2379, 2380
MEMBER_COUNTS = (1, 3, 5)


def members(
    lab: RoutedLab, directory: Path, count: int, tls: TlsFiles | None
) -> list[EmbeddedEtcd]:
    """The etcd members of a lab (not started)."""
    if count == 1:
        return [EmbeddedEtcd(directory / "etcd", host=lab.gateway(2), client_port=CLIENT_PORT,
                             peer_port=PEER_PORT, netns=lab.ns("r"), tls=tls)]  # fmt: skip
    made = [
        EmbeddedEtcd(directory / "etcd" / f"e{k}", host=lab.etcd_ip(k), client_port=CLIENT_PORT,
                     peer_port=PEER_PORT, name=f"e{k}", netns=lab.etcd_ns(k), tls=tls)
        for k in range(1, count + 1)
    ]  # fmt: skip
    cluster = ",".join(f"{m.name}={m.peer_url}" for m in made)
    for m in made:
        m.initial_cluster = cluster
    return made


def hosts(lab: RoutedLab, count: int) -> tuple[str, ...]:
    """The addresses etcd's certificate must name."""
    return (lab.gateway(2),) if count == 1 else tuple(lab.etcd_ip(k) for k in range(1, count + 1))


def start(
    lab: RoutedLab,
    directory: Path,
    count: int,
    tls: TlsFiles | None,
    started: Callable[[LabProcess], None],
) -> list[LabProcess]:
    """Start every member of a `count`-member etcd (one of MEMBER_COUNTS, as lifecycle.up
    checks) detached, so they outlive clusterctl, then wait until each is healthy;
    `started` hears of each process as soon as it runs (the lab records it for `down`)."""
    if count > 1:
        lab.add_etcd_members(count)
    made = members(lab, directory, count, tls)
    procs = []
    for m in made:
        proc = _spawn(m, m.name if count > 1 else "etcd")
        started(proc)
        procs.append(proc)
    for m, proc in zip(made, procs, strict=True):
        _wait_healthy(m, proc)
    return procs


def _spawn(m: EmbeddedEtcd, name: str) -> LabProcess:
    """Start a member in a session of its own (it outlives the caller), output to its log."""
    m.data_dir.mkdir(parents=True, exist_ok=True)
    return LabProcess.spawn(name, m.command(), m.data_dir / "etcd.log",
                            str(m.data_dir / "data"), m.url)  # fmt: skip


LOG_TAIL = 20  # lines of a member's log a start failure carries


def _wait_healthy(m: EmbeddedEtcd, proc: LabProcess, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not m.healthy():
        if not proc.running():  # the log's end in the error: a failed `lab up` removes it
            log = m.data_dir / "etcd.log"
            tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL:] if log.exists() else []
            raise RuntimeError(f"etcd {proc.name} exited; the end of its log:\n" + "\n".join(tail))
        if time.monotonic() > deadline:
            raise TimeoutError(f"etcd at {m.url} not healthy within {timeout_s} s")
        time.sleep(0.05)


def restart(state: LabState, k: int, wait_s: float = 0.0) -> LabProcess:
    """Start member k of a running lab again on its data directory (it rejoins the cluster);
    wait up to `wait_s` for it to be healthy (a member is only once a quorum runs)."""
    count = len(state.etcd_members)
    m = members(state.lab, Path(state.directory), count, state.tls("etcd"))[k - 1]
    proc = _spawn(m, m.name if count > 1 else "etcd")
    if wait_s:
        _wait_healthy(m, proc, wait_s)
    return proc


def etcdctl_binary() -> Path:
    return etcd_binary().with_name("etcdctl")
