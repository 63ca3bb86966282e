"""The rollout controller: what a rollout does next, on a gate check or an operator's action.

Pure: no clock, no I/O. The manager calls :func:`check` on its own clock while a rollout runs
(every ``rollout_period`` seconds, and only then — nothing polls), with the live windows of the
stable and candidate versions; and :func:`operate` when an operator pauses, resumes, promotes or
aborts. Either returns the rollout's next state, which the manager applies through the same
path as every other state change (a ``rollout`` event, the audit log, the serving map).

    step = check(rollout, stable_stats, candidate_stats, gates, now)
    if step.rollout != rollout:
        ...  # apply step.rollout, report step.verdict
"""

from __future__ import annotations

from dataclasses import dataclass

from baton.rollout.gates import GateConfig, GateVerdict, WindowStats, evaluate
from baton.rollout.schedule import Rollout, RolloutStatus, advance

__all__ = ["ACTIONS", "RolloutCheck", "check", "operate"]

ACTIONS = ("pause", "resume", "promote", "abort")


@dataclass(frozen=True, slots=True)
class RolloutCheck:
    """The rollout after one gate check (``rollout`` itself when unchanged), and the verdict
    (``None`` when nothing was judged: not running, or a version without live statistics)."""

    rollout: Rollout
    verdict: GateVerdict | None = None


def check(
    rollout: Rollout,
    stable: WindowStats | None,
    candidate: WindowStats | None,
    gates: GateConfig,
    now: float,
) -> RolloutCheck:
    """Evaluate the gates on the two versions' windows and advance the schedule."""
    if rollout.status is not RolloutStatus.RUNNING or stable is None or candidate is None:
        return RolloutCheck(rollout)
    verdict = evaluate(stable, candidate, gates)
    return RolloutCheck(advance(rollout, now, verdict), verdict)


def operate(rollout: Rollout, action: str, now: float) -> Rollout:
    """An operator's ``pause``, ``resume``, ``promote`` or ``abort``; raises ``ValueError`` for
    any other action. Finished rollouts never change."""
    if action == "pause":
        return rollout.pause()
    if action == "resume":
        return rollout.resume(now)
    if action == "promote":
        return rollout.promote()
    if action == "abort":
        return rollout.abort()
    raise ValueError(f"unknown rollout action {action!r}; use one of {', '.join(ACTIONS)}")
