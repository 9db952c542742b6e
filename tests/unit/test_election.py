"""The election policy as a pure function, and its timing rule."""

from __future__ import annotations

import pytest

from cluster.config import ElectionConfig
from cluster.decision import Action, decide
from cluster.errors import ValidationError
from cluster.model import Designation, LeaderRecord, Registration, Role
from cluster.snapshot import Snapshot


def snap(
    roles: dict[str, Role],
    leader: str | None = None,
    ready: set[str] | None = None,
    alive: set[str] | None = None,
) -> Snapshot:
    alive = set(roles) if alive is None else alive
    return Snapshot(
        revision=10,
        registrations={n: Registration(n, "", "", 0, "", 0.0) for n in alive},
        designations={n: Designation(n, r) for n, r in roles.items()},
        designation_revisions=dict.fromkeys(roles, 1),
        ready=frozenset(
            (ready if ready is not None else {n for n, r in roles.items() if r != Role.NONE})
            & alive
        ),
        services={},
        service_revisions={},
        leader=LeaderRecord(leader, "", 3, 0.0) if leader else None,
        leader_revision=7 if leader else 0,
        leader_lease=99 if leader else 0,
        term=3,
        term_mod_revision=7,
        owners={},
        handover=None,
    )


def follower(view: Snapshot, me: str, absent_for_s: float = 0.0, **kw: object) -> Action:
    return decide(view, me, 0, False, absent_for_s, 0.3, **kw).action  # type: ignore[arg-type]


def test_designated_primary_campaigns_at_once_backup_waits_for_it() -> None:
    view = snap({"a": Role.PRIMARY, "b": Role.BACKUP, "c": Role.NONE})
    assert follower(view, "a") == Action.CAMPAIGN
    assert follower(view, "b") == Action.WAIT
    assert follower(view, "b", absent_for_s=0.31) == Action.CAMPAIGN
    assert follower(view, "c") == Action.FOLLOW


def test_backup_does_not_wait_for_a_primary_known_dead_or_not_ready() -> None:
    view = snap({"a": Role.PRIMARY, "b": Role.BACKUP})
    assert follower(view, "b", dead=frozenset({"a"})) == Action.CAMPAIGN
    assert follower(snap({"a": Role.PRIMARY, "b": Role.BACKUP}, ready={"b"}), "b") == (
        Action.CAMPAIGN
    )


def test_nobody_campaigns_while_a_leader_exists() -> None:
    view = snap({"a": Role.PRIMARY, "b": Role.BACKUP}, leader="b")
    assert follower(view, "a") == Action.FOLLOW


def test_leader_steps_down_when_its_lease_is_not_surely_valid_or_its_key_is_gone() -> None:
    view = snap({"a": Role.PRIMARY}, leader="a")
    assert decide(view, "a", 7, False, 0, 0.3).action == Action.STEP_DOWN
    assert decide(view, "a", 6, True, 0, 0.3).action == Action.STEP_DOWN  # another term
    assert decide(view, "a", 7, True, 0, 0.3).action == Action.KEEP


@pytest.mark.parametrize(
    ("roles", "expected", "target"),
    [
        ({"a": Role.BACKUP, "b": Role.PRIMARY}, Action.HAND_OVER, "b"),
        ({"a": Role.NONE, "b": Role.BACKUP}, Action.HAND_OVER, "b"),
        ({"a": Role.BACKUP, "b": Role.BACKUP}, Action.KEEP, ""),
        ({"a": Role.NONE, "b": Role.NONE}, Action.KEEP, ""),
        ({"a": Role.PRIMARY, "b": Role.BACKUP}, Action.KEEP, ""),
    ],
)
def test_leader_hands_over_by_designation(
    roles: dict[str, Role], expected: Action, target: str
) -> None:
    d = decide(snap(roles, leader="a"), "a", 7, True, 0, 0.3)
    assert (d.action, d.target) == (expected, target)


def test_a_lone_leader_against_its_designation_says_why() -> None:
    d = decide(snap({"a": Role.NONE}, leader="a"), "a", 7, True, 0, 0.3)
    assert d.action == Action.KEEP
    assert (
        d.note == "designated none but no other candidate is alive and ready, so it keeps leading"
    )


def test_no_handover_during_the_preempt_delay_or_to_a_dead_node() -> None:
    view = snap({"a": Role.BACKUP, "b": Role.PRIMARY}, leader="a")
    assert decide(view, "a", 7, True, 0, 0.3, may_hand_over=False).action == Action.KEEP
    assert decide(view, "a", 7, True, 0, 0.3, dead=frozenset({"b"})).action == Action.KEEP


def test_timing_rule_is_enforced() -> None:
    ElectionConfig.for_ttl(1)
    ElectionConfig.for_ttl(5)
    with pytest.raises(ValidationError, match="must be < ttl_s"):
        ElectionConfig(ttl_s=1, loop_s=0.5, retry_s=0.3)


def test_a_candidate_that_cannot_announce_a_vip_follows_and_is_never_handed_over_to() -> None:
    from dataclasses import replace

    from cluster.decision import handover_target
    from cluster.model import ServiceSpec

    view = snap({"n1": Role.BACKUP, "n2": Role.PRIMARY}, leader="n1")
    far = replace(view.registrations["n2"], announces=("10.9.0.0/16",))
    view = replace(
        view,
        registrations={**view.registrations, "n2": far},
        services={"web": ServiceSpec("web", "10.0.0.1", 80)},
    )
    assert handover_target(view, "n1", frozenset()) is None  # n2 could not hold the VIP
    alone = replace(view, leader=None, leader_revision=0)
    assert follower(alone, "n2") == Action.FOLLOW
