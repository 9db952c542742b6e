"""The server's decapsulation program, packet by packet (BPF_PROG_TEST_RUN on the real kernel)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from datapath import layout
from datapath.layout import Stat
from datapath.libbpf import XDP_DROP, XDP_PASS, BpfObject
from tests.conftest import load_bpf

pytestmark = pytest.mark.bpf
SCHEDULER, STRANGER = "10.0.1.1", "10.0.9.9"
CLIENT, VIP, SERVER = "192.0.2.7", "10.100.0.10", "10.0.2.12"
OTHER_NODE, OTHER_VIP = "10.0.2.13", "10.100.0.99"
ETH = bytes.fromhex("020000000002020000000001") + struct.pack("!H", 0x0800)


def checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(
    src: str, dst: str, proto: int, payload: bytes, frag: int = 0, options: bytes = b""
) -> bytes:
    ihl = 5 + len(options) // 4
    header = (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | ihl,
            0,
            ihl * 4 + len(payload),
            1,
            frag,
            64,
            proto,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
        + options
    )
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


TCP_SYN = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
INNER = ipv4(CLIENT, VIP, socket.IPPROTO_TCP, TCP_SYN)


@pytest.fixture(scope="module")
def prog() -> Iterator[BpfObject]:
    obj = load_bpf()
    obj.update(layout.TRUSTED_MAP, socket.inet_aton(SCHEDULER), b"\x01")
    obj.update(layout.CONFIG_MAP, layout.u32(0), socket.inet_aton(SERVER))
    obj.update(layout.SERVED_MAP, socket.inet_aton(VIP), b"\x01")
    yield obj
    obj.close()


def run(prog: BpfObject, packet: bytes) -> tuple[int, bytes]:
    return prog.test_run(layout.PROG, packet)


def stat(prog: BpfObject, reason: Stat) -> int:
    return prog.percpu_sum(layout.STATS_MAP, struct.pack("<I", reason))


def test_packets_from_a_trusted_scheduler_lose_exactly_the_outer_header(prog: BpfObject) -> None:
    before = stat(prog, Stat.DECAPSULATED)
    verdict, out = run(prog, ETH + ipv4(SCHEDULER, SERVER, socket.IPPROTO_IPIP, INNER))
    assert verdict == XDP_PASS
    assert out == ETH + INNER  # same MACs, the client's packet untouched, checksums intact
    assert stat(prog, Stat.DECAPSULATED) == before + 1


def test_outer_options_are_stripped_too(prog: BpfObject) -> None:
    outer = ipv4(SCHEDULER, SERVER, socket.IPPROTO_IPIP, INNER, options=b"\x01\x01\x01\x00")
    verdict, out = run(prog, ETH + outer)
    assert (verdict, out) == (XDP_PASS, ETH + INNER)


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (ETH + ipv4(STRANGER, SERVER, socket.IPPROTO_IPIP, INNER), Stat.UNTRUSTED),
        (
            ETH + ipv4(SCHEDULER, SERVER, socket.IPPROTO_IPIP, INNER, frag=0x2000),
            Stat.DECAP_FRAGMENT,
        ),
        (
            ETH + ipv4(SCHEDULER, SERVER, socket.IPPROTO_IPIP, INNER, frag=0x0010),
            Stat.DECAP_FRAGMENT,
        ),
        (
            ETH + ipv4(SCHEDULER, SERVER, socket.IPPROTO_IPIP, b"\x60" + INNER[1:]),
            Stat.DECAP_MALFORMED,
        ),
        (ETH + ipv4(SCHEDULER, SERVER, socket.IPPROTO_IPIP, INNER[:12]), Stat.DECAP_MALFORMED),
        # Katran's decap check: for this node, and for a VIP it serves
        (ETH + ipv4(SCHEDULER, OTHER_NODE, socket.IPPROTO_IPIP, INNER), Stat.DECAP_NOT_MINE),
        (
            ETH
            + ipv4(
                SCHEDULER,
                SERVER,
                socket.IPPROTO_IPIP,
                ipv4(CLIENT, OTHER_VIP, socket.IPPROTO_TCP, TCP_SYN),
            ),
            Stat.DECAP_NOT_MINE,
        ),
        (
            ETH
            + ipv4(
                SCHEDULER,
                SERVER,
                socket.IPPROTO_IPIP,
                ipv4(CLIENT, SERVER, socket.IPPROTO_TCP, TCP_SYN),
            ),
            Stat.DECAP_NOT_MINE,
        ),
    ],
)
def test_untrusted_fragmented_or_malformed_encapsulation_is_dropped_and_counted(
    prog: BpfObject, packet: bytes, reason: Stat
) -> None:
    before = stat(prog, reason)
    assert run(prog, packet)[0] == XDP_DROP
    assert stat(prog, reason) == before + 1


@pytest.mark.parametrize(
    "packet",
    [
        ETH + INNER,  # a plain packet to a VIP (or anything else): the stack decides
        ETH + ipv4(SCHEDULER, SERVER, socket.IPPROTO_TCP, TCP_SYN)[:12],  # truncated: the stack's
        bytes.fromhex("ffffffffffff020000000001") + struct.pack("!H", 0x0806) + bytes(28),  # ARP
        ETH[:12] + struct.pack("!H", 0x86DD) + bytes(40),  # IPv6: not ours
    ],
)
def test_everything_else_passes_untouched(prog: BpfObject, packet: bytes) -> None:
    verdict, out = run(prog, packet)
    assert verdict == XDP_PASS
    assert out == packet
