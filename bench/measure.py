"""Measuring tools for the benchmarks: wrk in the lab's client namespace, process CPU time, and
an XDP program's run time (kernel.bpf_stats_enabled)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab import lifecycle as lab


@dataclass
class WrkResult:
    requests_s: float
    p50_ms: float
    p99_ms: float
    bytes_read: int
    errors: int


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _bytes(text: str) -> int:
    value, unit = re.fullmatch(r"([\d.]+)([KMGT]?B)", text).groups()  # type: ignore[union-attr]
    return int(float(value) * {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}[unit])


def wrk(state: lab.LabState, url: str, seconds: int, conns: int, close: bool) -> WrkResult:
    net = state.lab
    cmd = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", url]
    if close:
        cmd[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(
        net.exec(net.ns("c"), *cmd), capture_output=True, text=True, check=True
    ).stdout
    return parse_wrk(out, url)


def parse_wrk(out: str, url: str) -> WrkResult:
    """wrk's figures from its --latency output (errors: socket errors and non-2xx answers)."""
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    if len(latency) < 2:
        raise RuntimeError(f"wrk {url} answered no latency figures:\n{out}")
    read = re.search(r"requests in [\d.]+\w+, (\S+) read", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return WrkResult(
        float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        _ms(latency["50"]),
        _ms(latency["99"]),
        _bytes(read.group(1)) if read else 0,
        (sum(int(x) for x in errors.groups()) if errors else 0)
        + (int(non2xx.group(1)) if non2xx else 0),
    )


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def xdp_prog_id(ns: str) -> int:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "-d", "link", "show", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(json.loads(out)[0]["xdp"]["prog"]["id"])


def xdp_run_time_s(prog_id: int) -> float:
    out = subprocess.run(
        ["bpftool", "-j", "prog", "show", "id", str(prog_id)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(json.loads(out).get("run_time_ns", 0)) / 1e9
