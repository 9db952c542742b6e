"""Rule patterns in linear time: RE2 (as Envoy), the only module that imports `re2`.

Python's `re` backtracks: `^/(a+)+$` against `/aaaa…a!` takes exponential time, and a request
path is chosen by the client. RE2 matches in time linear in the input and refuses what it cannot
do so (backreferences, lookaround) at `service apply`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # refusals are reported to the caller, not written to stderr
_OPTIONS.max_mem = 8 << 20  # RE2's bound on one compiled pattern's automaton


class Pattern(Protocol):
    def search(self, text: str) -> object | None: ...


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> Pattern:
    """A compiled RE2 pattern; ValueError with RE2's reason when it cannot be compiled."""
    try:
        compiled: Pattern = re2.compile(pattern, options=_OPTIONS)
    except re2.error as e:
        reason = e.args[0] if e.args else str(e)
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise ValueError(str(reason)) from None
    return compiled
