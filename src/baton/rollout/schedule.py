"""The staged canary schedule: a pure state machine over :class:`Rollout` values.

A rollout moves a model from ``stable`` to ``candidate`` through weights such as 1, 5, 25, 50,
100 %. :func:`advance` is called with the time and the latest gate verdict: a failing verdict
rolls back at once (whatever the step); a passing one moves to the next step once the current
step has lasted ``interval`` seconds; "insufficient data" holds the step. Reaching the last step
promotes. Operators can pause, resume, promote or abort; finished rollouts never change again.

    r = Rollout.start("m", stable=1, candidate=2, plan=RolloutPlan((1, 10, 100), 30), now=t)
    r = advance(r, now=t + 31, verdict=GateVerdict.passed())   # → 10 %
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from baton.rollout.gates import GateVerdict

__all__ = ["Rollout", "RolloutPlan", "RolloutStatus", "advance"]


class RolloutStatus(StrEnum):
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    PROMOTED = "PROMOTED"
    ROLLED_BACK = "ROLLED_BACK"
    ABORTED = "ABORTED"


FINISHED = frozenset({RolloutStatus.PROMOTED, RolloutStatus.ROLLED_BACK, RolloutStatus.ABORTED})


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """Candidate weights in percent (strictly increasing, ending at 100) and seconds per step.
    A first step of 0 is a shadow step: the candidate gets copies of live traffic, no answers."""

    steps: tuple[float, ...] = (1, 5, 25, 50, 100)
    interval: float = 30.0

    def __post_init__(self) -> None:
        if not self.steps or self.steps[-1] != 100:
            raise ValueError("rollout steps must end at 100 (%)")
        if any(not 0 <= s <= 100 for s in self.steps) or 0 in self.steps[1:]:
            raise ValueError("rollout steps are percentages in (0, 100]; only the first may be 0")
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError("rollout steps must increase")
        if self.interval < 0:
            raise ValueError("rollout interval must not be negative")


@dataclass(frozen=True, slots=True)
class Rollout:
    model: str
    stable: int
    candidate: int
    plan: RolloutPlan
    step: int
    status: RolloutStatus
    step_started: float
    reason: str | None = None

    @staticmethod
    def start(model: str, stable: int, candidate: int, plan: RolloutPlan, now: float) -> Rollout:
        return Rollout(model, stable, candidate, plan, 0, RolloutStatus.RUNNING, now)

    @property
    def weight(self) -> float:
        """The candidate's share of unversioned traffic, in [0, 1]."""
        if self.status is RolloutStatus.PROMOTED:
            return 1.0
        if self.status in (RolloutStatus.ROLLED_BACK, RolloutStatus.ABORTED):
            return 0.0
        return self.plan.steps[self.step] / 100

    @property
    def shadowing(self) -> bool:
        """At a 0 % step: the candidate sees copies of traffic and answers nobody."""
        return not self.finished and self.plan.steps[self.step] == 0

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def pause(self) -> Rollout:
        return (
            self
            if self.status is not RolloutStatus.RUNNING
            else replace(self, status=RolloutStatus.PAUSED)
        )

    def resume(self, now: float) -> Rollout:
        """Continue a paused rollout; the current step's interval starts over."""
        return (
            self
            if self.status is not RolloutStatus.PAUSED
            else replace(self, status=RolloutStatus.RUNNING, step_started=now)
        )

    def promote(self, reason: str = "promoted by operator") -> Rollout:
        return (
            self
            if self.finished
            else replace(
                self, status=RolloutStatus.PROMOTED, step=len(self.plan.steps) - 1, reason=reason
            )
        )

    def abort(self, reason: str = "aborted by operator") -> Rollout:
        return self if self.finished else replace(self, status=RolloutStatus.ABORTED, reason=reason)


def advance(rollout: Rollout, now: float, verdict: GateVerdict) -> Rollout:
    """The rollout after one evaluation at ``now``. Pure; returns ``rollout`` when unchanged."""
    if rollout.status is not RolloutStatus.RUNNING:
        return rollout
    if verdict.failed:
        return replace(rollout, status=RolloutStatus.ROLLED_BACK, reason="; ".join(verdict.reasons))
    if verdict.insufficient or now - rollout.step_started < rollout.plan.interval:
        return rollout
    if rollout.step == len(rollout.plan.steps) - 1:
        return replace(rollout, status=RolloutStatus.PROMOTED, reason="all steps passed")
    return replace(rollout, step=rollout.step + 1, step_started=now)
