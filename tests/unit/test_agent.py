"""The agent's parsers, rise/fall counting, and checks against real local sockets."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.checks import CheckState, probe
from agent.sample import (
    CpuTimes,
    Sampler,
    count_connections,
    parse_loadavg,
    parse_meminfo,
    parse_pid_stat,
    parse_proc_stat,
    utilisation,
)
from cluster.model import CheckType, HealthCheck

STAT = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n"


def test_proc_parsers() -> None:
    assert parse_proc_stat(STAT) == CpuTimes(busy=150, total=1000)
    assert utilisation(CpuTimes(150, 1000), CpuTimes(250, 1200)) == 0.5
    assert utilisation(CpuTimes(150, 1000), CpuTimes(150, 1000)) == 0.0
    assert parse_loadavg("0.42 0.30 0.20 1/123 4567\n") == 0.42
    assert parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 250 kB\n") == 0.75
    assert parse_pid_stat("42 (a (weird) name) S 1 42 42 0 -1 0 0 0 0 0 7 3 0 0") == (42, 10)
    assert count_connections([("10.0.0.1", 80), ("10.0.0.1", 80), ("10.0.0.2", 80)]) == {
        ("10.0.0.1", 80): 2,
        ("10.0.0.2", 80): 1,
    }
    with pytest.raises(ValueError, match="no aggregate cpu line"):
        parse_proc_stat("intr 1 2 3\n")


def test_rise_and_fall_count_consecutive_results_and_start_down() -> None:
    state = CheckState(rise=2, fall=3)
    assert not state.up
    for ok, up in [
        (True, False),
        (True, True),
        (False, True),
        (True, True),
        (False, True),
        (False, True),
        (False, False),
        (True, False),
        (True, True),
    ]:
        state.record(ok, 1.0)
        assert state.up == up


async def test_sampler_counts_established_connections_on_a_local_address() -> None:
    accepted: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        sample = await Sampler(scope="process-group").sample()
        assert sample.connections.get(("127.0.0.1", port)) == 1
        assert 0.0 <= sample.cpu <= 1.0
        assert 0.0 < sample.memory_used < 1.0
    finally:
        for w in (writer, *accepted):
            w.close()
            await w.wait_closed()
        server.close()
        await server.wait_closed()


async def test_tcp_and_http_checks_against_real_sockets() -> None:
    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        status = b"200 OK" if b"/healthz" in line else b"503 Busy"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ok, latency, error = await probe(HealthCheck(CheckType.TCP), "127.0.0.1", port)
        assert ok and latency >= 0 and error == ""
        ok, _, _ = await probe(HealthCheck(CheckType.HTTP, path="/healthz"), "127.0.0.1", port)
        assert ok
        ok, _, error = await probe(HealthCheck(CheckType.HTTP, path="/x"), "127.0.0.1", port)
        assert not ok and error == "HTTP status 503, expected 200"
    finally:
        server.close()
        await server.wait_closed()
    ok, _, error = await probe(HealthCheck(CheckType.TCP, timeout_s=0.5), "127.0.0.1", port)
    assert not ok and "ConnectionRefusedError" in error


async def test_process_group_scope_counts_a_busy_member_and_machine_scope_everything() -> None:
    """A child burning a core in this process group shows in the group's CPU (a walk of /proc
    at every sample: the child is born after the first)."""
    group = Sampler(scope="process-group", rescan_s=0.0)
    burner = subprocess.Popen(
        [sys.executable, "-c", "while True: pass"], process_group=os.getpgid(0)
    )
    try:
        await asyncio.sleep(1.0)
        busy = (await group.sample()).cpu
    finally:
        burner.kill()
        burner.wait()
    assert busy > 0.5 / (os.cpu_count() or 1)  # at least half a core of all of them
    await asyncio.sleep(0.5)
    idle = (await group.sample()).cpu
    assert idle < busy


def _fake_proc(root: Path, members: dict[int, tuple[int, int]], cpu_total: int) -> None:
    """A /proc with a `cpu` line and one stat file per pid: pid -> (process group, ticks)."""
    (root / "stat").write_text(f"cpu  {cpu_total} 0 0 0 0 0 0 0 0 0\n")
    for pid, (group, ticks) in members.items():
        (root / str(pid)).mkdir(exist_ok=True)
        (root / str(pid) / "stat").write_text(
            f"{pid} (x y) S 1 {group} {group} 0 -1 0 0 0 0 0 {ticks} 0 0 0 20 0 1 0"
        )


def test_process_group_scope_walks_proc_only_every_rescan_interval(tmp_path: Path) -> None:
    """Between walks only the known members' stat files are read: a process that joins the
    group counts from the next walk on; a member that exits stops counting at once."""
    _fake_proc(tmp_path, {10: (7, 100), 11: (7, 50), 12: (8, 999)}, 1000)
    sampler = Sampler(tmp_path, "process-group", pgid=7, rescan_s=3600.0)
    assert sampler.members == [10, 11] and sampler.last == CpuTimes(150, 1000)
    _fake_proc(tmp_path, {10: (7, 130), 13: (7, 500)}, 1100)
    shutil.rmtree(tmp_path / "11")
    assert sampler._cpu_times() == CpuTimes(130, 1100)  # 13 is not known yet, 11 is gone
    sampler.walked_at -= 3600.0
    assert sampler._cpu_times() == CpuTimes(630, 1100)
    assert sampler.members == [10, 13]
