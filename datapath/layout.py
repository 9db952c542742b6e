"""Names and value layouts shared with datapath/bpf/tcphop.bpf.c, in one place."""

from __future__ import annotations

import socket
import struct
from enum import IntEnum

DECAP_PROG = "tcphop_decap"
TRUSTED_MAP = "trusted"  # u32 scheduler address (network order) -> u8
DECAP_STATS_MAP = "decap_stats"  # per-CPU u64 counters indexed by DecapStat


class DecapStat(IntEnum):
    PASSED = 0
    DECAPSULATED = 1
    UNTRUSTED = 2
    FRAGMENT = 3
    MALFORMED = 4


SCHED_PROG = "tcphop_sched"
VIPS_MAP = "vips"  # VipKey -> VipMeta
RINGS_MAP = "rings"  # service * RING_SIZE + slot -> backend index + 1 (0: none)
BACKENDS_MAP = "backends"  # backend index -> Backend
FLOWS_MAP = "flows"  # FlowKey -> backend index (LRU)
SCHED_CONFIG_MAP = "sched_config"  # [0] -> this scheduler's address
SCHED_STATS_MAP = "sched_stats"  # per-CPU u64 counters indexed by SchedStat
RING_SIZE = 65_537
MAX_SERVICES = 16
VIP_L7 = 1


class SchedStat(IntEnum):
    PASSED = 0
    ENCAPSULATED = 1
    NEW_FLOWS = 2
    TO_LISTENER = 3
    NO_BACKEND = 4
    FRAGMENT = 5
    MALFORMED = 6
    ENCAP_FAILED = 7


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
