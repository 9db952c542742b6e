"""Network-namespace fixtures: a LAN of tcphopd nodes holding VIPs on eth0, and the lab
`clusterctl lab up` builds (with the SDK to drive it)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from cluster.sdk import ClusterClient
from lab import lifecycle as lab
from lab.netcluster import NetCluster as Cluster
from lab.netns import NetLab, netns_available
from tests.conftest import clusterctl, load_bpf, need

T = TypeVar("T")


def sdk(state: lab.LabState, op: Callable[[ClusterClient], Awaitable[T]]) -> T:
    """Run one SDK call against the lab, from synchronous test code."""

    async def run() -> T:
        async with ClusterClient(
            state.endpoints, timeout_s=5, tls=state.admin_tls(), insecure=state.admin_tls() is None
        ) as c:
            return await op(c)

    return asyncio.run(run())


@contextlib.contextmanager
def running_lab(where: Path, nodes: int) -> Iterator[lab.LabState]:
    """`clusterctl lab up` in `where`, and `lab down` after (gated on netns and BPF)."""
    ok, why = netns_available()
    need("netns", ok, why)
    load_bpf().close()  # gating: root, clang, libbpf, a kernel that loads the program
    env = {"TCPHOP_LAB_DIR": str(where)}
    up = clusterctl("lab", "up", "--nodes", str(nodes), env=env)
    try:
        assert up.returncode == 0, up.stderr
        state = lab.LabState.load(where)
        assert state is not None
        yield state
    finally:
        keep_logs(where)
        down = clusterctl("lab", "down", env=env)
        assert down.returncode == 0, down.stderr


def keep_logs(where: Path) -> None:
    """Copy a lab's logs beside it before `lab down` removes them: pytest keeps the last
    three sessions' temporary directories, so a failure can be read afterwards."""
    for log in where.rglob("*.log"):  # processes' logs, and the etcd members' in etcd*/
        kept = where.parent / "lab-logs" / log.relative_to(where)
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, kept)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    ok, why = netns_available()
    need("netns", ok, why)
    c = Cluster.up(NetLab(3), tmp_path)
    try:
        yield c
    finally:
        c.down()
