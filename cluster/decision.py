"""The election's policy, without I/O: one snapshot of the cluster in, one decision out
(`decide`). cluster/election.py observes, calls it and acts."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from cluster.model import Role
from cluster.snapshot import Snapshot


class Action(StrEnum):
    CAMPAIGN = "campaign"
    KEEP = "keep"
    HAND_OVER = "hand_over"
    STEP_DOWN = "step_down"
    FOLLOW = "follow"
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    target: str = ""
    note: str = ""  # for KEEP: why the leader leads against its designation
    cause: str = ""  # for STEP_DOWN: one of STEP_DOWN_CAUSES (a metric label)


# Why a leader stops leading: the `cause` label of tcphop_election_step_downs_total.
STEP_DOWN_CAUSES = (
    "stopping", "lease_expired", "etcd_unreachable", "deposed", "fenced_write_failed", "handover",
)  # fmt: skip


def handover_target(view: Snapshot, me: str, dead: frozenset[str]) -> str | None:
    """Who the leader should hand over to, by designation; None to keep leading."""
    role = view.role(me)
    others = sorted(n for n in view.ready - dead if n != me and not view.unannounceable(n))
    primaries = [n for n in others if view.role(n) == Role.PRIMARY]
    if role != Role.PRIMARY and primaries:
        return primaries[0]
    if role == Role.NONE:
        backups = [n for n in others if view.role(n) == Role.BACKUP]
        return backups[0] if backups else None
    return None


def decide(
    view: Snapshot,
    me: str,
    my_leader_revision: int,
    lease_valid: bool,
    absent_for_s: float,
    backup_delay_s: float,
    dead: frozenset[str] = frozenset(),
    may_hand_over: bool = True,
) -> Decision:
    """The whole election policy, without I/O. `dead`: nodes known dead whose registration
    has not expired yet; they are neither waited for nor handed over to."""
    role = view.role(me)
    if my_leader_revision:
        if not lease_valid:
            return Decision(
                Action.STEP_DOWN,
                "the leader lease was not refreshed in time",
                cause="lease_expired",
            )
        if view.leader_revision != my_leader_revision:
            return Decision(
                Action.STEP_DOWN,
                "the leader key is gone or belongs to another term",
                cause="deposed",
            )
        target = handover_target(view, me, dead) if may_hand_over else None
        if target:
            return Decision(
                Action.HAND_OVER,
                f"{target} is designated {view.role(target)} "
                f"and ready; this node is designated {role}",
                target,
            )
        if role == Role.PRIMARY:
            return Decision(Action.KEEP, "designated primary")
        note = f"designated {role} but no other candidate is alive and ready, so it keeps leading"
        return Decision(Action.KEEP, note, note=note)
    if role == Role.NONE:
        return Decision(Action.FOLLOW, "designated none")
    if missing := view.unannounceable(me):
        return Decision(Action.FOLLOW, f"cannot announce {', '.join(missing)} (--announce)")
    if view.leader is not None:
        return Decision(Action.FOLLOW, f"{view.leader.node_id} leads (term {view.leader.term})")
    if role == Role.PRIMARY:
        return Decision(Action.CAMPAIGN, "designated primary and no leader")
    primary = [n for n in view.ready - dead if n != me and view.role(n) == Role.PRIMARY]
    if primary and absent_for_s < backup_delay_s:
        return Decision(Action.WAIT, f"designated primary {primary[0]} is ready; it goes first")
    return Decision(Action.CAMPAIGN, "designated backup and no leader")
