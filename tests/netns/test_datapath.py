"""XdpDatapath on a real interface: what it programs, what survives a restart, what teardown
removes, and tcphopd refusing a datapath address that is not the uplink's."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from datapath import layout
from lab.netns import ip, netns_available
from tests.conftest import load_bpf, need
from tests.contract.datapath_cases import CASES

pytestmark = [pytest.mark.netns, pytest.mark.bpf]
BPF_MAP_TYPE_PERCPU_ARRAY = 6
SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from datapath.protocol import DesiredState, Flow, SchedulerTables, VipService
from datapath.xdp import XdpDatapath

address, vip, pins, add = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4] == "add"

async def main():
    dp = XdpDatapath("eth0", address, pins, generic=True)
    await dp.start()
    web = VipService("web", vip, 80, False, (("n1", 100),))
    tables = SchedulerTables((("n1", address),), (web,))
    state = DesiredState(frozenset({vip}), frozenset({address}), tables)
    await dp.apply(state)
    await dp.apply(state)  # idempotent
    if add:
        await dp.add_flows([Flow("192.0.2.7", 40000, vip, 80, "n1")])
    out = {
        "flows": [f.node for f in dp.flows(10)],
        "lookup": dp.lookup_flow("192.0.2.7", 40000, vip, 80),
        "stats": sorted(dp.info().stats),
        "programmed": dp.programmed() == state,
    }
    await dp.close()
    print(json.dumps(out))

asyncio.run(main())
"""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    ok, why = netns_available()
    need("netns", ok, why)
    load_bpf().close()
    ns, peer = f"th{os.getpid() % 100000}da", f"th{os.getpid() % 100000}db"
    net = "10.149.7"
    pins = tmp_path / "bpf"
    pins.mkdir()
    subprocess.run(["mount", "-t", "bpf", "bpf", str(pins)], check=True)
    made = []
    try:
        for name in (ns, peer):
            ip("netns", "add", name)
            made.append(name)
        ip(
            "link",
            "add",
            "eth0",
            "netns",
            ns,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            peer,
        )
        ip("addr", "add", f"{net}.2/24", "dev", "eth0", netns=ns)
        ip("addr", "add", f"{net}.1/24", "dev", "eth0", netns=peer)
        for name in (ns, peer):
            ip("link", "set", "eth0", "up", netns=name)
            ip("link", "set", "lo", "up", netns=name)
        ip("route", "add", "default", "via", f"{net}.1", netns=ns)
        yield ns, net, pins
    finally:
        for name in made:
            ip("netns", "del", name)
        subprocess.run(["umount", str(pins)], check=False)


def run_in(ns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=60, check=False
    )


def xdp_attached(ns: str) -> bool:
    return "xdp" in json.loads(ip("-j", "-d", "link", "show", "eth0", netns=ns))[0]


def test_programmed_state_survives_a_restart_and_teardown_removes_everything(
    node: tuple[str, str, Path],
) -> None:
    ns, net, pins = node
    address, vip = f"{net}.2", "10.149.100.1"
    first = run_in(ns, sys.executable, "-c", SCRIPT, address, vip, str(pins / "n1"), "add")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout.splitlines()[-1])
    assert result["lookup"] == "n1" and result["programmed"]
    assert {"encapsulated", "decapsulated", "untrusted", "vip_reply"} <= set(result["stats"])
    assert xdp_attached(ns)  # left attached when the process is gone
    assert "lo:tcphop" in ip("addr", "show", "dev", "lo", netns=ns)
    # An older program's counters (one reason fewer) are pinned: replaced, not refused.
    (pins / "n1" / "stats").unlink()
    pin_percpu_array(pins / "n1" / "stats", entries=len(layout.Stat) - 1)
    again = run_in(ns, sys.executable, "-c", SCRIPT, address, vip, str(pins / "n1"), "keep")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["lookup"] == "n1"  # the flow survived

    flags = ["--node-id", "n1", "--listen", f"{address}:7700", "--uplink", "eth0"]
    flags += ["--datapath", "xdp", "--xdp-mode", "generic", "--bpf-pin-dir", str(pins / "n1")]
    down = run_in(ns, sys.executable, "-m", "cluster", *flags, "--teardown", "--log-json")
    assert down.returncode == 0, down.stderr
    assert "datapath_removed" in down.stderr
    assert not xdp_attached(ns)
    assert vip not in ip("addr", "show", "dev", "lo", netns=ns)
    assert not (pins / "n1").exists()


def test_tcphopd_refuses_an_advertised_address_that_is_not_the_uplinks(
    node: tuple[str, str, Path],
) -> None:
    ns, net, pins = node
    flags = ["--node-id", "n1", "--listen", f"{net}.2:7700", "--advertise", "10.149.9.9:7700"]
    flags += ["--insecure"]  # the refusal under test comes before any TLS matters
    flags += ["--uplink", "eth0", "--datapath", "xdp", "--bpf-pin-dir", str(pins / "n1")]
    refused = run_in(ns, sys.executable, "-m", "cluster", *flags, "--log-json")
    assert refused.returncode == 2, refused.stderr
    assert "the advertised host 10.149.9.9 is not an address of eth0" in refused.stderr
    assert not xdp_attached(ns)


def test_xdp_keeps_the_datapath_contract(node: tuple[str, str, Path]) -> None:
    """tests/contract/datapath_cases.py, the cases FakeDatapath passes, on real XDP."""
    ns, net, pins = node
    cases = Path(__file__).resolve().parents[1] / "contract" / "datapath_cases.py"
    done = run_in(ns, sys.executable, str(cases), f"{net}.2", str(pins))
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.splitlines()[-1])
    assert results == {case.__name__: "ok" for case in CASES}


def pin_percpu_array(path: Path, entries: int) -> None:
    """Pin a per-CPU array of u64 counters at `path` (the shape of an older `stats` map)."""
    lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    lib.bpf_map_create.argtypes = (
        [ctypes.c_int, ctypes.c_char_p] + [ctypes.c_uint32] * 3 + [ctypes.c_void_p]
    )
    fd = lib.bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, b"stats", 4, 8, entries, None)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    try:
        assert lib.bpf_obj_pin(fd, str(path).encode()) == 0, os.strerror(ctypes.get_errno())
    finally:
        os.close(fd)
