"""Names and value layouts shared with datapath/bpf/tcphop.bpf.c, in one place."""

from __future__ import annotations

import socket
import struct
from enum import IntEnum

PROG = "tcphop_xdp"
TRUSTED_MAP = "trusted"  # u32 scheduler address (network order) -> u8
SERVED_MAP = "served"  # u32 VIP this node serves (network order) -> u8
VIPS_MAP = "vips"  # VipKey -> VipMeta
HANDED_MAP = "handed"  # VipKey of an L7 service -> u8 (every node)
RINGS_MAP = "rings"  # service * RING_SIZE + slot -> backend index + 1 (0: none)
BACKENDS_MAP = "backends"  # backend index -> Backend
FLOWS_MAP = "flows"  # FlowKey -> backend index | FLOW_CLOSING (LRU)
CONFIG_MAP = "config"  # [0] -> this node's address
STATS_MAP = "stats"  # per-CPU u64 counters indexed by Stat
PLACED_MAP = "placed"  # PlacedKey -> per-CPU u64: new connections per VIP:port and server
MAPS = (
    TRUSTED_MAP,
    SERVED_MAP,
    VIPS_MAP,
    HANDED_MAP,
    RINGS_MAP,
    BACKENDS_MAP,
    FLOWS_MAP,
    CONFIG_MAP,
    STATS_MAP,
    PLACED_MAP,
)
COUNTER_MAPS = (STATS_MAP, PLACED_MAP)  # replaced, not refused, when their shape changes
# Key and value sizes of every map, as datapath/bpf/tcphop.bpf.c declares them (a test checks
# them, and the structs' field offsets, against the compiled object's BTF).
ADDR_SIZE = 4  # an IPv4 address, network order
INDEX_SIZE = 4  # u32
VIP_KEY_SIZE = 8  # struct vip_key: addr, port, pad
VIP_META_SIZE = 8  # struct vip_meta: service, flags
FLOW_KEY_SIZE = 12  # struct flow_key: src, dst, sport, dport
BACKEND_SIZE = 12  # struct backend: addr, mac[6], pad[2]
PLACED_KEY_SIZE = 12  # struct placed_key: vip, port, pad, server
SIZES = {
    TRUSTED_MAP: (ADDR_SIZE, 1),
    SERVED_MAP: (ADDR_SIZE, 1),
    VIPS_MAP: (VIP_KEY_SIZE, VIP_META_SIZE),
    HANDED_MAP: (VIP_KEY_SIZE, 1),
    RINGS_MAP: (INDEX_SIZE, INDEX_SIZE),
    BACKENDS_MAP: (INDEX_SIZE, BACKEND_SIZE),
    FLOWS_MAP: (FLOW_KEY_SIZE, INDEX_SIZE),
    CONFIG_MAP: (INDEX_SIZE, ADDR_SIZE),
    STATS_MAP: (INDEX_SIZE, 8),  # per CPU
    PLACED_MAP: (PLACED_KEY_SIZE, 8),  # per CPU
}
# Field offsets (bytes) of the structs the Python side packs.
FIELDS = {
    "vip_key": {"addr": 0, "port": 4, "pad": 6},
    "vip_meta": {"service": 0, "flags": 4},
    "flow_key": {"src": 0, "dst": 4, "sport": 8, "dport": 10},
    "backend": {"addr": 0, "mac": 4, "pad": 10},
    "config": {"addr": 0},
    "placed_key": {"vip": 0, "port": 4, "pad": 6, "server": 8},
}
RING_SIZE = 65_537
MAX_SERVICES = 16
MAX_BACKENDS = 1024
VIP_L7 = 1
VIP_FENCED = 2  # no longer leads: forward known flows, place nothing new (L7: drop new SYNs)
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
    FENCED = 14  # a new connection reached a deposed leader's scheduler: dropped
    BOUNCED = 15  # an L7 SYN no socket here takes (its connection is gone): back to the scheduler
    STALE_FLOW = 16  # a SYN the flow's own server sent back: the flow is forgotten


def vip_key(addr: str, port: int) -> bytes:
    return socket.inet_aton(addr) + struct.pack("!H", port) + b"\0\0"


def vip_meta(service: int, l7: bool, fenced: bool = False) -> bytes:
    return struct.pack("<II", service, (VIP_L7 if l7 else 0) | (VIP_FENCED if fenced else 0))


def flow_key(src: str, dst: str, sport: int, dport: int) -> bytes:
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)


def backend(addr: str, next_hop_mac: bytes) -> bytes:
    return socket.inet_aton(addr) + next_hop_mac + b"\0\0"


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def parse_placed_key(key: bytes) -> tuple[str, int, str]:
    """(VIP, port, server address) from a PlacedKey."""
    return socket.inet_ntoa(key[:4]), struct.unpack("!H", key[4:6])[0], socket.inet_ntoa(key[8:12])


def parse_flow_key(key: bytes) -> tuple[str, str, int, int]:
    """(client address, VIP, client port, VIP port) from a FlowKey."""
    sport, dport = struct.unpack("!HH", key[8:12])
    return socket.inet_ntoa(key[:4]), socket.inet_ntoa(key[4:8]), sport, dport
