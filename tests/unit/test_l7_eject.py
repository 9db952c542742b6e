"""Ejection in the L7 handoff (cluster/l7/handoff.py): at a take-over, the node the election
found dead or silent gets no new connection for EJECT_S unless no other candidate is left."""

from __future__ import annotations

import time

from cluster.l7.handoff import EJECT_S, L7Handoff


def test_an_ejected_node_gets_nothing_until_its_time_is_up_unless_it_is_the_last() -> None:
    handoff = L7Handoff("n1", None, None)  # type: ignore[arg-type]
    handoff.eject({"n1", "n2"})
    assert "n1" not in handoff.ejected  # never itself: it serves its own connections
    assert handoff._eligible(["n2", "n3"]) == ["n3"]
    assert handoff._eligible(["n2"]) == ["n2"]  # the last one left is tried anyway
    assert handoff.stats["nodes_ejected"] == 1
    assert time.monotonic() + EJECT_S - 0.5 < handoff.ejected["n2"]
    handoff.ejected["n2"] = time.monotonic() - 0.01  # its time is up
    assert handoff._eligible(["n2", "n3"]) == ["n2", "n3"] and not handoff.ejected
