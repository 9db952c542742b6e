"""Names and value layouts shared with datapath/bpf/tcphop.bpf.c, in one place."""

from __future__ import annotations

import socket
import struct
from enum import IntEnum

PROG = "tcphop_xdp"
TRUSTED_MAP = "trusted"  # u32 scheduler address (network order) -> u8
SERVED_MAP = "served"  # u32 VIP this node serves (network order) -> u8
VIPS_MAP = "vips"  # VipKey -> VipMeta
RINGS_MAP = "rings"  # service * RING_SIZE + slot -> backend index + 1 (0: none)
BACKENDS_MAP = "backends"  # backend index -> Backend
FLOWS_MAP = "flows"  # FlowKey -> backend index | FLOW_CLOSING (LRU)
CONFIG_MAP = "config"  # [0] -> this node's address
STATS_MAP = "stats"  # per-CPU u64 counters indexed by Stat
MAPS = (
    TRUSTED_MAP,
    SERVED_MAP,
    VIPS_MAP,
    RINGS_MAP,
    BACKENDS_MAP,
    FLOWS_MAP,
    CONFIG_MAP,
    STATS_MAP,
)
RING_SIZE = 65_537
MAX_SERVICES = 16
MAX_BACKENDS = 1024
VIP_L7 = 1
FLOW_CLOSING = 0x8000_0000  # the client sent FIN or RST on the flow
FLOW_INDEX = 0x7FFF_FFFF


class Stat(IntEnum):
    PASSED = 0
    DECAPSULATED = 1
    UNTRUSTED = 2
    DECAP_FRAGMENT = 3
    DECAP_MALFORMED = 4
    ENCAPSULATED = 5
    NEW_FLOWS = 6
    TO_LISTENER = 7
    NO_BACKEND = 8
    VIP_FRAGMENT = 9
    ENCAP_FAILED = 10
    LOCAL = 11
    VIP_REPLY = 12
    DECAP_NOT_MINE = 13


def vip_key(addr: str, port: int) -> bytes:
    return socket.inet_aton(addr) + struct.pack("!H", port) + b"\0\0"


def vip_meta(service: int, l7: bool) -> bytes:
    return struct.pack("<II", service, VIP_L7 if l7 else 0)


def flow_key(src: str, dst: str, sport: int, dport: int) -> bytes:
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)


def backend(addr: str, next_hop_mac: bytes) -> bytes:
    return socket.inet_aton(addr) + next_hop_mac + b"\0\0"


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def parse_flow_key(key: bytes) -> tuple[str, str, int, int]:
    """(client address, VIP, client port, VIP port) from a FlowKey."""
    sport, dport = struct.unpack("!HH", key[8:12])
    return socket.inet_ntoa(key[:4]), socket.inet_ntoa(key[4:8]), sport, dport
