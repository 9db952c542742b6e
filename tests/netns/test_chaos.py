"""Split brain and static stability in the real lab (short versions of bench/chaos.py): a lab
with a 3-member etcd, load from the client namespace, and the router watching who answers ARP
for the VIP.

One side of the decision rule (README, "Static stability"): a leader cut from etcd alone keeps
the VIP only until the new leader announces it, and never answers together with it. The other
side (etcd lost by everyone: the leader answers on) is tests/netns/test_vip.py's etcd outage
test and the chaos suite's quorum-loss row.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cluster.sdk import Role
from lab import faults
from lab import lifecycle as lab
from lab.netns import netns_available
from tests.conftest import load_bpf, need, wait_for
from tests.netns.conftest import keep_logs, sdk

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.e2e]


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab.LabState]:
    ok, why = netns_available()
    need("netns", ok, why)
    load_bpf().close()
    where = tmp_path_factory.mktemp("chaos") / "lab"
    up = lab.up(where, 3, "generic", True, lambda line: None, etcd_members=3)
    try:
        services = [lab.sample_service(up), lab.sample_l7_service(up)]
        wait_for(lambda: _try(lambda: sdk(up, lambda c: c.apply_services(services))), 20,
                 "the nodes to answer")  # fmt: skip
        designate(up)
        yield up
    finally:
        keep_logs(where)
        lab.down(where)


def designate(state: lab.LabState) -> None:
    async def go(c: Any) -> None:
        await c.designate("n2", Role.BACKUP)
        await c.designate("n1", Role.PRIMARY)

    wait_for(lambda: _try(lambda: sdk(state, go)), 20, "the nodes to answer")
    wait_for(lambda: leader(state) == "n1", 20, "n1 to lead")
    # n1's own rings: a new leader places nothing until its servers' reports reach it (asking
    # any node could answer with the rings the previous leader still holds for its grace window)
    rings = lambda: sdk(state, lambda c: c.datapath("n1")).rings  # noqa: E731
    wait_for(lambda: len(r := rings()) == 2 and all(len(w) == 3 for w in r.values()), 20,
             "every server in both of n1's rings")  # fmt: skip


def _try(call: Any) -> bool:
    try:
        call()
        return True
    except Exception:
        return False


def leader(state: lab.LabState) -> str:
    st = sdk(state, lambda c: c.status())
    return st.leader.node_id if st.leader else ""


class Watch:
    """arpwatch on the router's VIP segment, and traffic from the client, around a fault."""

    def __init__(self, state: lab.LabState, seconds: float) -> None:
        net = state.lab
        self.arp = subprocess.Popen(
            net.exec(net.ns("r"), sys.executable, "-m", "lab.arpwatch", "--ifname", "br2",
                     "--vip", state.vip), stdout=subprocess.PIPE, text=True)  # fmt: skip
        self.load = subprocess.Popen(
            net.exec(net.ns("c"), sys.executable, "-m", "lab.traffic", "--vip", state.vip,
                     "--seconds", str(seconds), "--downloads", "2",
                     "--size", str(int(seconds * 2**20)), "--rate", str(2**20)),
            stdout=subprocess.PIPE, text=True)  # fmt: skip
        time.sleep(1.0)

    def finish(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        out, _ = self.load.communicate(timeout=60)
        self.arp.send_signal(signal.SIGTERM)
        watched, _ = self.arp.communicate(timeout=10)
        return json.loads(out), [json.loads(line) for line in watched.splitlines()]


HELD = """
import hashlib, socket, sys
from lab.traffic import expected_sha256
vip, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conns = [socket.create_connection((vip, port), timeout=10) for _ in range(3)]
for c in conns:  # the head's last line held back: the leader is still reading it
    c.sendall(b"GET /bytes/%d HTTP/1.1\\r\\nHost: lab\\r\\nConnection: close\\r\\n" % size)
print("held", flush=True)
sys.stdin.readline()
for c in conns:
    c.sendall(b"\\r\\n")
for c in conns:
    with c.makefile("rb") as f:
        status = f.readline().decode().strip()
        head = dict(line.decode().lower().split(":", 1) for line in iter(f.readline, b"\\r\\n"))
        body = f.read()
    ok = len(body) == size and hashlib.sha256(body).hexdigest() == expected_sha256(size)
    print(status, head.get("x-served-by", "?").strip(), "intact" if ok else "damaged")
"""


def failed(load: dict[str, Any], start: float, end: float) -> list[list[Any]]:
    return [p for p in load["probes"] if not p[1] and start <= p[0] <= end]


def test_a_leader_cut_from_etcd_alone_yields_to_the_new_leader_and_never_answers_with_it(
    state: lab.LabState,
) -> None:
    watch = Watch(state, 7.0)
    cut = time.time()
    faults.cut(state, "n1", etcd_only=True)
    try:
        wait_for(lambda: leader(state) == "n2", 10, "n2 to take over")
        time.sleep(1.0)
        healed = time.time()
    finally:
        faults.heal(state, "n1")
    load, arp = watch.finish()
    assert all(d["ok"] for d in load["downloads"]), load["downloads"]
    assert not [a for a in arp if len(a["macs"]) > 1], arp  # never two owners
    before = [a["macs"] for a in arp if a["t"] <= cut][-1:]
    seen = before + [a["macs"] for a in arp if cut < a["t"] <= healed and a["macs"]]
    # A probe nobody answered in time (10 ms) shows as a gap between two answers of one owner.
    owners = [m for i, m in enumerate(seen) if i == 0 or m != seen[i - 1]]
    assert len(owners) == 2 and owners[0] != owners[1], arp  # n1 kept it, then n2 took it
    assert not failed(load, cut, healed), failed(load, cut, healed)  # no new connection lost
    designate(state)


def test_a_planned_handover_serves_the_l7_requests_the_old_leader_had_accepted(
    state: lab.LabState,
) -> None:
    """Connections n1's L7 listener accepted before a planned handover (their request heads still
    arriving) are served by n1 itself after it steps down, not answered 503, and keep working
    once the router follows n2: n2 lists them as it takes over and forwards them to n1."""
    net, size = state.lab, 4 * 2**20
    held = subprocess.Popen(
        net.exec(net.ns("c"), sys.executable, "-c", HELD, state.vip, str(lab.APP_PORT), str(size)),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert held.stdout is not None and held.stdout.readline().strip() == "held"
        sdk(state, lambda c: c.designate("n2", Role.PRIMARY))
        wait_for(lambda: leader(state) == "n2", 10, "n2 to take over")
        time.sleep(1.0)  # n2 announces the VIP: the rest of each request arrives through n2
        out, _ = held.communicate("go\n", timeout=60)
    finally:
        held.kill()
        designate(state)
    assert out.splitlines() == ["HTTP/1.1 200 OK n1 intact"] * 3, out
