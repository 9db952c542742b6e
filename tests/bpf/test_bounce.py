"""A stale L7 flow (BPF_PROG_TEST_RUN on the real kernel): a node sends back a new L7 SYN that no
socket of its own takes, and the scheduler, when the SYN comes from the flow's own server,
forgets the flow and passes the SYN to its listener."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from datapath import layout
from datapath.layout import Stat
from datapath.libbpf import XDP_PASS, XDP_TX, BpfObject
from tests.bpf.test_decap import ETH, checksum, ipv4
from tests.conftest import load_bpf

pytestmark = pytest.mark.bpf
SCHEDULER, NODE, OTHER = "10.0.1.1", "10.0.2.11", "10.0.3.12"
CLIENT, VIP = "192.0.2.7", "10.100.0.10"
SYN, ACK = 0x02, 0x10
BOUNCE_ID = 0x7468  # the outer IP id of a packet sent back


def tcp(sport: int, dport: int, flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)


def handed_off(
    sender: str, receiver: str, dport: int, flags: int = SYN, bounced: bool = False
) -> bytes:
    """An encapsulated client packet; `bounced`: with the outer id of one a node sent back."""
    inner = ipv4(CLIENT, VIP, socket.IPPROTO_TCP, tcp(40000, dport, flags))
    packet = ETH + ipv4(sender, receiver, socket.IPPROTO_IPIP, inner)
    if not bounced:
        return packet
    packet = packet[:18] + struct.pack("!H", BOUNCE_ID) + packet[20:24] + bytes(2) + packet[26:]
    return packet[:24] + struct.pack("!H", checksum(packet[14:34])) + packet[26:]


def stat(prog: BpfObject, reason: Stat) -> int:
    return prog.percpu_sum(layout.STATS_MAP, struct.pack("<I", reason))


def loaded(address: str, trusted: str) -> BpfObject:
    obj = load_bpf()
    obj.update(layout.CONFIG_MAP, layout.u32(0), socket.inet_aton(address))
    obj.update(layout.TRUSTED_MAP, socket.inet_aton(trusted), b"\x01")
    obj.update(layout.SERVED_MAP, socket.inet_aton(VIP), b"\x01")
    return obj


@pytest.fixture(scope="module")
def node() -> Iterator[BpfObject]:
    obj = loaded(NODE, SCHEDULER)
    yield obj
    obj.close()


@pytest.fixture
def port() -> Iterator[int]:
    """A port of this namespace no socket listens on (held bound, so none starts to)."""
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        yield held.getsockname()[1]


def test_a_node_sends_an_l7_syn_it_holds_no_socket_for_back_to_the_scheduler(
    node: BpfObject, port: int
) -> None:
    node.update(layout.HANDED_MAP, layout.vip_key(VIP, port), b"\x01")
    before = stat(node, Stat.BOUNCED)
    original = handed_off(SCHEDULER, NODE, port)
    verdict, out = node.test_run(layout.PROG, original)
    assert verdict == XDP_TX
    assert out[:6] == original[6:12] and out[6:12] == original[:6]  # MACs swapped
    assert out[26:30] == socket.inet_aton(NODE) and out[30:34] == socket.inet_aton(SCHEDULER)
    assert struct.unpack("!H", out[18:20])[0] == BOUNCE_ID
    assert checksum(out[14:34]) == 0  # the outer header's checksum holds
    assert out[34:] == original[34:]  # the client's SYN, untouched
    assert stat(node, Stat.BOUNCED) == before + 1

    again = (
        original[:18] + struct.pack("!H", BOUNCE_ID) + original[20:24] + bytes(2) + original[26:]
    )
    again = again[:24] + struct.pack("!H", checksum(again[14:34])) + again[26:]
    verdict, _ = node.test_run(layout.PROG, again)  # sent back once: never again
    assert verdict == XDP_PASS
    assert stat(node, Stat.BOUNCED) == before + 1


def test_a_node_keeps_what_a_socket_takes_and_what_is_no_new_l7_syn(
    node: BpfObject, port: int
) -> None:
    with socket.create_server(("0.0.0.0", 0)) as listener:
        listening = listener.getsockname()[1]
        for p in (port, listening):
            node.update(layout.HANDED_MAP, layout.vip_key(VIP, p), b"\x01")
        before = stat(node, Stat.BOUNCED)
        for packet in (
            handed_off(SCHEDULER, NODE, listening),  # a listener takes it (L4-like)
            handed_off(SCHEDULER, NODE, port, SYN | ACK),
            handed_off(SCHEDULER, NODE, port, ACK),  # not a new connection: the stack's
            handed_off(SCHEDULER, NODE, port + 1 if port < 65535 else port - 1),  # not L7
        ):
            verdict, out = node.test_run(layout.PROG, packet)
            assert (verdict, out) == (XDP_PASS, ETH + packet[34:])  # decapsulated
        assert stat(node, Stat.BOUNCED) == before


def test_the_scheduler_forgets_a_flow_its_own_server_sent_back() -> None:
    scheduler = loaded(SCHEDULER, NODE)
    try:
        scheduler.update(layout.TRUSTED_MAP, socket.inet_aton(OTHER), b"\x01")
        for index, addr in enumerate((NODE, OTHER)):
            scheduler.update(layout.BACKENDS_MAP, layout.u32(index), layout.backend(addr, bytes(6)))
        scheduler.update(layout.VIPS_MAP, layout.vip_key(VIP, 8080), layout.vip_meta(0, l7=True))
        scheduler.update(layout.HANDED_MAP, layout.vip_key(VIP, 8080), b"\x01")
        key = layout.flow_key(CLIENT, VIP, 40000, 8080)
        scheduler.update(layout.FLOWS_MAP, key, layout.u32(0))  # pinned to NODE

        for packet in (
            handed_off(OTHER, SCHEDULER, 8080, bounced=True),  # not NODE's to release
            handed_off(NODE, SCHEDULER, 8080, ACK, bounced=True),  # no new SYN
            handed_off(NODE, SCHEDULER, 8080),  # not sent back
        ):
            assert scheduler.test_run(layout.PROG, packet)[0] == XDP_PASS
            assert scheduler.lookup(layout.FLOWS_MAP, key, layout.INDEX_SIZE) == layout.u32(0)

        before = stat(scheduler, Stat.STALE_FLOW)
        packet = handed_off(NODE, SCHEDULER, 8080, bounced=True)
        verdict, out = scheduler.test_run(layout.PROG, packet)
        assert (verdict, out) == (XDP_PASS, ETH + packet[34:])  # to the listener
        assert scheduler.lookup(layout.FLOWS_MAP, key, layout.INDEX_SIZE) is None
        assert stat(scheduler, Stat.STALE_FLOW) == before + 1
    finally:
        scheduler.close()
