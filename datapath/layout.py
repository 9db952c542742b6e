"""Names and value layouts shared with datapath/bpf/tcphop.bpf.c, in one place."""

from __future__ import annotations

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
