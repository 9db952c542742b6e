"""Load samples: CPU from /proc/stat deltas, load average, memory, connections per VIP:port.

Parsers are pure; `Sampler` is the thin I/O shell. Connections come from the kernel's socket
diagnostics (datapath.netlink): established TCP sockets whose local address
and port are a service's VIP and port.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from datapath.netlink import established_local_ends


@dataclass(frozen=True, slots=True)
class CpuTimes:
    busy: int
    total: int


@dataclass(frozen=True, slots=True)
class Sample:
    cpu: float  # utilisation since the previous sample, 0..1 over all cores
    load1: float
    memory_used: float  # 0..1
    connections: dict[tuple[str, int], int]  # (local address, port) -> established sockets


def parse_proc_stat(text: str) -> CpuTimes:
    """The aggregate `cpu` line: busy = everything but idle and iowait."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            return CpuTimes(sum(values) - idle, sum(values))
    raise ValueError("no aggregate cpu line in /proc/stat")


def utilisation(before: CpuTimes, after: CpuTimes) -> float:
    total = after.total - before.total
    return 0.0 if total <= 0 else min(1.0, max(0.0, (after.busy - before.busy) / total))


def parse_loadavg(text: str) -> float:
    return float(text.split()[0])


def parse_meminfo(text: str) -> float:
    fields = {
        k: int(v.split()[0])
        for k, v in (line.split(":", 1) for line in text.splitlines() if ":" in line)
    }
    total = fields.get("MemTotal", 0)
    return 0.0 if total <= 0 else 1.0 - fields.get("MemAvailable", total) / total


def count_connections(local_ends: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
    return dict(Counter(local_ends))


def parse_pid_stat(text: str) -> tuple[int, int]:
    """(process group, utime + stime in clock ticks) from /proc/<pid>/stat."""
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[2]), int(fields[11]) + int(fields[12])


# A process-group scope walks all of /proc this often to find the group's members (a new member
# is counted within this long); between walks it reads the members' own stat files only. (A walk
# per sample cost a lab node about a tenth of its event loop under load: a few hundred files.)
MEMBER_RESCAN_S = 5.0


def group_ticks(proc: Path, pgid: int, pids: Iterable[int] | None = None) -> dict[int, int]:
    """pid -> CPU ticks used so far, for the live processes of one process group: among `pids`,
    or among every process in `proc` when None."""
    if pids is None:
        pids = sorted(int(e.name) for e in proc.iterdir() if e.name.isdigit())
    found = {}
    for pid in pids:
        try:
            group, ticks = parse_pid_stat((proc / str(pid) / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        if group == pgid:
            found[pid] = ticks
    return found


class Sampler:
    """CPU of the machine, or (scope "process-group") of this process's group: several lab
    nodes share one machine, and a node's load is then what its own processes use."""

    def __init__(
        self,
        proc: Path = Path("/proc"),
        scope: str = "machine",
        pgid: int | None = None,
        rescan_s: float = MEMBER_RESCAN_S,
    ) -> None:
        self.proc, self.scope, self.rescan_s = proc, scope, rescan_s
        self.pgid = os.getpgid(0) if pgid is None else pgid
        self.members: list[int] = []
        self.walked_at = -rescan_s
        self.last = self._cpu_times()

    def _cpu_times(self) -> CpuTimes:
        machine = parse_proc_stat((self.proc / "stat").read_text())
        if self.scope == "machine":
            return machine
        walk = time.monotonic() - self.walked_at >= self.rescan_s
        ticks = group_ticks(self.proc, self.pgid, None if walk else self.members)
        if walk:
            self.walked_at = time.monotonic()
        self.members = list(ticks)
        return CpuTimes(sum(ticks.values()), machine.total)

    async def sample(self) -> Sample:
        now = self._cpu_times()
        cpu, self.last = utilisation(self.last, now), now
        ends = await asyncio.to_thread(established_local_ends)
        return Sample(
            cpu,
            parse_loadavg((self.proc / "loadavg").read_text()),
            parse_meminfo((self.proc / "meminfo").read_text()),
            count_connections(ends),
        )
