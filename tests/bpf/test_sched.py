"""The scheduler's XDP program, packet by packet (BPF_PROG_TEST_RUN on the real kernel)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from datapath import layout, maglev
from datapath.layout import Stat
from datapath.libbpf import XDP_DROP, XDP_PASS, XDP_TX, BpfObject
from tests.bpf.test_decap import ETH, TCP_SYN, checksum, ipv4
from tests.conftest import load_bpf

pytestmark = pytest.mark.bpf
SCHEDULER, VIP, CLIENT = "10.0.1.1", "10.100.0.10", "192.0.2.7"
SERVERS = {
    "a": ("10.0.2.11", bytes.fromhex("02000000020b")),
    "b": ("10.0.3.12", bytes.fromhex("02000000030c")),
}
INDEX = {"a": 0, "b": 1}


def fill_ring(obj: BpfObject, service: int, table: list[str] | None) -> None:
    base = service * layout.RING_SIZE
    for slot in range(layout.RING_SIZE):
        value = INDEX[table[slot]] + 1 if table else 0
        obj.update(layout.RINGS_MAP, layout.u32(base + slot), layout.u32(value))


@pytest.fixture(scope="module")
def prog() -> Iterator[BpfObject]:
    obj = load_bpf()
    obj.update(layout.CONFIG_MAP, layout.u32(0), socket.inet_aton(SCHEDULER))
    for name, (addr, mac) in SERVERS.items():
        obj.update(layout.BACKENDS_MAP, layout.u32(INDEX[name]), layout.backend(addr, mac))
    obj.update(layout.VIPS_MAP, layout.vip_key(VIP, 80), layout.vip_meta(0, l7=False))
    obj.update(layout.VIPS_MAP, layout.vip_key(VIP, 8080), layout.vip_meta(1, l7=True))
    obj.update(layout.VIPS_MAP, layout.vip_key(VIP, 9000), layout.vip_meta(2, l7=False))
    fill_ring(obj, 0, maglev.build({"a": 100, "b": 100}, layout.RING_SIZE))
    obj.update(layout.BACKENDS_MAP, layout.u32(2), layout.backend(SCHEDULER, bytes(6)))
    obj.update(layout.VIPS_MAP, layout.vip_key(VIP, 7000), layout.vip_meta(3, l7=False))
    for slot in range(layout.RING_SIZE):  # service 3's only server is the scheduler itself
        obj.update(layout.RINGS_MAP, layout.u32(3 * layout.RING_SIZE + slot), layout.u32(3))
    yield obj
    obj.close()


def tcp(sport: int, dport: int, flags: int = 0x02) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)


def packet(sport: int, dport: int = 80, flags: int = 0x02, frag: int = 0x4000) -> bytes:
    return ETH + ipv4(CLIENT, VIP, socket.IPPROTO_TCP, tcp(sport, dport, flags), frag=frag)


def stat(prog: BpfObject, reason: Stat) -> int:
    return prog.percpu_sum(layout.STATS_MAP, struct.pack("<I", reason))


def server_of(out: bytes) -> str:
    return next(n for n, (addr, _) in SERVERS.items() if out[30:34] == socket.inet_aton(addr))


def test_a_syn_to_a_vip_is_encapsulated_whole_to_a_server(prog: BpfObject) -> None:
    original = packet(40001)
    verdict, out = prog.test_run(layout.PROG, original)
    assert verdict == XDP_TX
    name = server_of(out)
    addr, mac = SERVERS[name]
    assert out[:6] == mac  # to the next hop towards the server
    assert out[6:12] == ETH[:6]  # from the MAC the packet came to
    outer, inner = out[14:34], out[34:]
    assert inner == original[14:]  # the client's packet, untouched
    assert outer[0] == 0x45 and outer[9] == socket.IPPROTO_IPIP
    assert struct.unpack("!H", outer[2:4])[0] == 20 + len(inner)
    assert struct.unpack("!H", outer[6:8])[0] == 0x4000  # DF copied from the inner header
    assert outer[12:16] == socket.inet_aton(SCHEDULER) and outer[16:20] == socket.inet_aton(addr)
    assert checksum(outer) == 0  # a valid header checksums to zero
    flow = layout.flow_key(CLIENT, VIP, 40001, 80)
    assert prog.lookup(layout.FLOWS_MAP, flow, 4) == layout.u32(INDEX[name])


def test_later_packets_follow_the_flow_even_when_the_ring_changes(prog: BpfObject) -> None:
    first = server_of(prog.test_run(layout.PROG, packet(40002))[1])
    other = "b" if first == "a" else "a"
    fill_ring(prog, 0, [other] * layout.RING_SIZE)
    try:
        # ACK, PSH-ACK, a SYN (forged, or a retransmission: the flow stays), FIN-ACK
        for flags in (0x10, 0x18, 0x02, 0x11):
            verdict, out = prog.test_run(layout.PROG, packet(40002, flags=flags))
            assert (verdict, server_of(out)) == (XDP_TX, first)
        assert server_of(prog.test_run(layout.PROG, packet(40003))[1]) == other
        # The client closed; a new connection from the same port is placed afresh (a server
        # drained meanwhile gets none), as Katran does for every SYN.
        assert server_of(prog.test_run(layout.PROG, packet(40002))[1]) == other
    finally:
        fill_ring(prog, 0, maglev.build({"a": 100, "b": 100}, layout.RING_SIZE))


def test_new_connections_spread_over_the_ring(prog: BpfObject) -> None:
    chosen = [server_of(prog.test_run(layout.PROG, packet(41000 + i))[1]) for i in range(200)]
    assert 60 < chosen.count("a") < 140  # Maglev with equal weights: about half each


def test_l7_connections_go_to_the_local_listener_until_they_have_a_flow(prog: BpfObject) -> None:
    before = stat(prog, Stat.TO_LISTENER)
    verdict, out = prog.test_run(layout.PROG, packet(42000, dport=8080))
    assert (verdict, out) == (XDP_PASS, packet(42000, dport=8080))
    assert stat(prog, Stat.TO_LISTENER) == before + 1
    prog.update(layout.FLOWS_MAP, layout.flow_key(CLIENT, VIP, 42000, 8080), layout.u32(1))
    verdict, out = prog.test_run(layout.PROG, packet(42000, dport=8080, flags=0x10))
    assert (verdict, server_of(out)) == (XDP_TX, "b")  # hopped: the L7 hop installed the flow
    # A SYN carrying a live hopped connection's 4-tuple (spoofed, or a retransmission) goes to
    # its server, which answers with a challenge ACK: the flow stays.
    verdict, out = prog.test_run(layout.PROG, packet(42000, dport=8080))
    assert (verdict, server_of(out)) == (XDP_TX, "b")
    key = layout.flow_key(CLIENT, VIP, 42000, 8080)
    assert prog.lookup(layout.FLOWS_MAP, key, 4) == layout.u32(1)
    # The client closes (FIN, forwarded and remembered), then reuses the port.
    verdict, out = prog.test_run(layout.PROG, packet(42000, dport=8080, flags=0x11))
    assert (verdict, server_of(out)) == (XDP_TX, "b")
    assert prog.lookup(layout.FLOWS_MAP, key, 4) == layout.u32(1 | layout.FLOW_CLOSING)
    before = stat(prog, Stat.TO_LISTENER)
    assert prog.test_run(layout.PROG, packet(42000, dport=8080)) == (  # port reused: a new SYN
        XDP_PASS,
        packet(42000, dport=8080),
    )
    assert stat(prog, Stat.TO_LISTENER) == before + 1
    assert prog.lookup(layout.FLOWS_MAP, layout.flow_key(CLIENT, VIP, 42000, 8080), 4) is None


@pytest.mark.parametrize(
    ("pkt", "reason"),
    [
        (packet(43000, dport=9000), Stat.NO_BACKEND),  # a service with an empty ring
        (packet(43001, frag=0x2000), Stat.VIP_FRAGMENT),
    ],
)
def test_vip_packets_that_cannot_be_forwarded_are_dropped_never_passed(
    prog: BpfObject, pkt: bytes, reason: Stat
) -> None:
    before = stat(prog, reason)
    assert prog.test_run(layout.PROG, pkt)[0] == XDP_DROP
    assert stat(prog, reason) == before + 1


@pytest.mark.parametrize(
    "pkt",
    [
        ETH + ipv4(CLIENT, "10.0.1.1", socket.IPPROTO_TCP, TCP_SYN),  # not a VIP
        packet(44000, dport=22),  # the VIP's address, but no service on that port
        ETH + ipv4(CLIENT, VIP, socket.IPPROTO_UDP, b"\0" * 8),  # not TCP
    ],
)
def test_other_traffic_passes_untouched(prog: BpfObject, pkt: bytes) -> None:
    assert prog.test_run(layout.PROG, pkt) == (XDP_PASS, pkt)


def test_connections_placed_on_the_scheduler_itself_go_to_its_own_stack(prog: BpfObject) -> None:
    before = stat(prog, Stat.LOCAL)
    for flags in (0x02, 0x10):  # the SYN records the flow, the ACK follows it
        assert prog.test_run(layout.PROG, packet(45000, 7000, flags)) == (
            XDP_PASS,
            packet(45000, 7000, flags),
        )
    assert stat(prog, Stat.LOCAL) == before + 2


def test_replies_from_a_vip_are_counted_and_passed(prog: BpfObject) -> None:
    reply = ETH + ipv4(VIP, CLIENT, socket.IPPROTO_TCP, tcp(80, 46000, 0x12))
    before = stat(prog, Stat.VIP_REPLY)
    assert prog.test_run(layout.PROG, reply) == (XDP_PASS, reply)
    assert stat(prog, Stat.VIP_REPLY) == before + 1


def test_fenced_tables_forward_known_flows_and_drop_new_connections(prog: BpfObject) -> None:
    """A deposed leader's tables (VIP_FENCED): existing flows go on, nothing new is placed."""
    known = server_of(prog.test_run(layout.PROG, packet(45000))[1])
    placed = layout.PLACED_KEY_SIZE
    counted = sum(
        prog.percpu_sum(layout.PLACED_MAP, k) for k in prog.keys(layout.PLACED_MAP, placed)
    )
    prog.update(layout.VIPS_MAP, layout.vip_key(VIP, 80), layout.vip_meta(0, False, fenced=True))
    try:
        before = stat(prog, Stat.FENCED)
        verdict, out = prog.test_run(layout.PROG, packet(45000, flags=0x10))
        assert (verdict, server_of(out)) == (XDP_TX, known)
        for flags in (0x02, 0x10):  # a new SYN, and a stray ACK of no known flow
            assert prog.test_run(layout.PROG, packet(45001, flags=flags))[0] == XDP_DROP
        assert stat(prog, Stat.FENCED) == before + 2
        assert prog.lookup(layout.FLOWS_MAP, layout.flow_key(CLIENT, VIP, 45001, 80), 4) is None
    finally:
        prog.update(layout.VIPS_MAP, layout.vip_key(VIP, 80), layout.vip_meta(0, l7=False))
    assert placed_total(prog) == counted  # nothing placed while fenced


def test_a_fenced_l7_vip_drops_new_syns_and_passes_the_rest_to_the_stack(prog: BpfObject) -> None:
    """A stepped-down leader's L7 VIP: a new SYN is dropped (the client's retry reaches the new
    leader); any other packet goes to its stack, which still serves the connections its listener
    accepted while leading."""
    prog.update(layout.VIPS_MAP, layout.vip_key(VIP, 8080), layout.vip_meta(1, True, fenced=True))
    try:
        fenced, passed = stat(prog, Stat.FENCED), stat(prog, Stat.TO_LISTENER)
        assert prog.test_run(layout.PROG, packet(45100, 8080))[0] == XDP_DROP
        for flags in (0x10, 0x18, 0x11):  # ACK, data, FIN of a connection it accepted
            data = packet(45101, 8080, flags=flags)
            assert prog.test_run(layout.PROG, data) == (XDP_PASS, data)
        assert stat(prog, Stat.FENCED) == fenced + 1
        assert stat(prog, Stat.TO_LISTENER) == passed + 3
    finally:
        prog.update(layout.VIPS_MAP, layout.vip_key(VIP, 8080), layout.vip_meta(1, l7=True))
    assert prog.test_run(layout.PROG, packet(45100, 8080))[0] == XDP_PASS  # leading again


def placed_total(prog: BpfObject) -> int:
    keys = prog.keys(layout.PLACED_MAP, layout.PLACED_KEY_SIZE)
    return sum(prog.percpu_sum(layout.PLACED_MAP, k) for k in keys)
