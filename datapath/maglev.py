"""Weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016), pure Python.

`build(weights, size)` fills a lookup table of `size` slots (a prime; 65,537 by default, as in
the paper) so that each backend owns a share of slots proportional to its weight, and a change
of one backend moves few slots of the others. Each backend walks its own permutation of the
slots (offset and skip from a stable hash of its name); backends take turns claiming their next
free slot, a backend of weight w taking w / max_weight turns per round (Katran's weighted
variant). The same names and weights always give the same table, in every process.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence

DEFAULT_SIZE = 65_537


def _hashes(name: str) -> tuple[int, int]:
    digest = hashlib.blake2b(name.encode(), digest_size=16).digest()
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:], "little")


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def build(weights: Mapping[str, int], size: int = DEFAULT_SIZE) -> list[str]:
    """The lookup table: slot -> backend name. Backends of weight 0 get no slot.

    Raises ValueError for a non-prime size, negative weights, or no backend with weight > 0.
    """
    if not is_prime(size):
        raise ValueError(f"Maglev table size {size} must be prime")
    if any(w < 0 for w in weights.values()):
        raise ValueError(f"negative weight in {dict(weights)}")
    names = sorted(n for n, w in weights.items() if w > 0)
    if not names:
        raise ValueError("no backend with a positive weight")
    top = max(weights[n] for n in names)
    offsets, skips = [], []
    for name in names:
        h1, h2 = _hashes(name)
        offsets.append(h1 % size)
        skips.append(h2 % (size - 1) + 1)
    share = [weights[n] / top for n in names]
    credit = [0.0] * len(names)
    nxt = [0] * len(names)
    table: list[int] = [-1] * size
    filled = 0
    while True:
        for i in range(len(names)):
            credit[i] += share[i]
            while credit[i] >= 1.0:
                credit[i] -= 1.0
                offset, skip, j = offsets[i], skips[i], nxt[i]
                slot = (offset + j * skip) % size
                while table[slot] >= 0:
                    j += 1
                    slot = (offset + j * skip) % size
                table[slot] = i
                nxt[i] = j + 1
                filled += 1
                if filled == size:
                    return [names[k] for k in table]


def build_cached(weights: Mapping[str, int], size: int = DEFAULT_SIZE) -> Sequence[str]:
    """`build()`, remembered for the last 16 weight sets (about 0.5 MiB each). A backup builds
    the rings it would inherit while it follows, so a take-over finds them built."""
    return _build_cached(tuple(sorted(weights.items())), size)


@functools.lru_cache(maxsize=16)
def _build_cached(weights: tuple[tuple[str, int], ...], size: int) -> tuple[str, ...]:
    return tuple(build(dict(weights), size))


def lookup(table: Sequence[str], key: bytes) -> str:
    """The backend for a key (a flow's addresses, a client address, a cookie value)."""
    h = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")
    return table[h % len(table)]
