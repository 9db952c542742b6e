"""Placement policies and eligibility, without I/O."""

from __future__ import annotations

import collections
import random

from cluster.model import Designation, Policy, Pool, Role, Serving
from cluster.placement import (
    Candidate,
    NodeLoad,
    Placer,
    eligible,
    maglev_weights,
)

NOW = 100.0


def load(
    node: str,
    cpu: float = 0.1,
    conns: int = 0,
    latency: float = 1.0,
    up: tuple[str, ...] = ("web",),
    age_s: float = 0.0,
) -> NodeLoad:
    return NodeLoad(node, cpu, conns, latency, frozenset(up), NOW - age_s)


def designations(**serving: Serving) -> dict[str, Designation]:
    return {n: Designation(n, Role.NONE, s) for n, s in serving.items()}


def test_eligible_needs_pool_enabled_weight_fresh_report_and_check_up() -> None:
    d = designations(
        a=Serving.ENABLED,
        b=Serving.DRAINING,
        c=Serving.DISABLED,
        e=Serving.ENABLED,
        f=Serving.ENABLED,
        g=Serving.ENABLED,
    )
    d["g"] = Designation("g", weight=0)
    loads = {
        "a": load("a"),
        "b": load("b"),
        "c": load("c"),
        "e": load("e", age_s=2.0),
        "f": load("f", up=("other",)),
        "g": load("g"),
    }
    assert [c.node_id for c in eligible(Pool.everyone(), "web", d, loads, NOW, 1.5)] == ["a"]
    assert eligible(Pool(nodes=("b", "z")), "web", d, loads, NOW, 1.5) == []
    d["h"] = Designation("h", weight=7)
    loads["h"] = load("h")
    assert eligible(Pool(nodes=("h", "a")), "web", d, loads, NOW, 1.5) == [
        Candidate("a", 100),
        Candidate("h", 7),
    ]


def test_round_robin_cycles_and_weighted_follows_weights_evenly() -> None:
    placer = Placer(random.Random(1))
    cands = [Candidate("a", 100), Candidate("b", 100), Candidate("c", 100)]
    assert [placer.pick("s", Policy.ROUND_ROBIN, cands, {}) for _ in range(6)] == list("abcabc")
    weighted = [Candidate("a", 5), Candidate("b", 1), Candidate("c", 1)]
    picks = [placer.pick("w", Policy.WEIGHTED, weighted, {}) for _ in range(7)]
    assert collections.Counter(picks) == {"a": 5, "b": 1, "c": 1}
    assert picks[:3] != ["a", "a", "a"]  # smooth: not a burst of a


def test_least_loaded_prefers_idle_servers_without_herding() -> None:
    placer = Placer(random.Random(7))
    cands = [Candidate(n, 100) for n in "abcd"]
    loads = {
        "a": load("a", cpu=0.95),
        "b": load("b", cpu=0.05),
        "c": load("c", cpu=0.1),
        "d": load("d", cpu=0.15),
    }
    picks = collections.Counter(
        placer.pick("s", Policy.LEAST_LOADED, cands, loads) for _ in range(400)
    )
    assert picks["a"] == 0  # the busiest never wins a pair
    assert picks["b"] > picks["c"] > picks["d"] > 0  # but the idlest does not take all


def test_a_burst_between_reports_spreads_instead_of_herding() -> None:
    placer = Placer(random.Random(9))
    cands = [Candidate("a", 100), Candidate("b", 100)]
    loads = {"a": load("a", cpu=0.10), "b": load("b", cpu=0.12)}
    picks = collections.Counter(
        placer.pick("s", Policy.LEAST_LOADED, cands, loads) for _ in range(200)
    )
    assert picks["b"] > 50  # placed connections count until the next report
    placer.reported("a")
    placer.reported("b")
    assert placer.pending == {}


def test_connections_count_per_weight() -> None:
    placer = Placer(random.Random(3))
    cands = [Candidate("big", 400), Candidate("small", 100)]
    loads = {"big": load("big", conns=300), "small": load("small", conns=100)}
    assert placer.pick("s", Policy.LEAST_LOADED, cands, loads) == "big"


def test_persistence_keeps_a_client_on_one_server_while_the_set_is_unchanged() -> None:
    placer = Placer(random.Random(5))
    cands = [Candidate(n, 100) for n in "abc"]
    first = {
        ip: placer.pick("s", Policy.ROUND_ROBIN, cands, {}, persist=ip)
        for ip in (b"10.0.0.%d" % i for i in range(50))
    }
    again = {ip: placer.pick("s", Policy.LEAST_LOADED, cands, {}, persist=ip) for ip in first}
    assert first == again
    assert len(set(first.values())) == 3


def test_no_candidate_means_no_server() -> None:
    assert Placer().pick("s", Policy.LEAST_LOADED, [], {}) is None


def test_load_weights_have_hysteresis() -> None:
    cands = [Candidate("a", 100), Candidate("b", 100)]
    calm = maglev_weights(cands, {"a": load("a", cpu=0.1), "b": load("b", cpu=0.1)}, {})
    assert calm == {"a": 1000, "b": 1000}
    noisy = maglev_weights(cands, {"a": load("a", cpu=0.2), "b": load("b", cpu=0.1)}, calm)
    assert noisy == calm  # a 10 % wobble does not rebuild tables
    busy = maglev_weights(cands, {"a": load("a", cpu=0.9), "b": load("b", cpu=0.1)}, calm)
    assert busy["a"] < busy["b"] == 1000
