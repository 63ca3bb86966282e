"""Safe rollouts: staged canary schedule, metric gates, the controller's next-step decision and
swap rate limits — pure logic, plus the live statistics windows the gates read. The manager
(:mod:`baton.control`) applies them on its own clock."""

from baton.rollout.gates import GateConfig, GateVerdict, OutputSummary, WindowStats, evaluate
from baton.rollout.ratelimit import (
    SwapDecision,
    SwapLimits,
    UpdateGate,
    coalesce,
    limit_update,
    swap_decision,
)
from baton.rollout.schedule import Rollout, RolloutPlan, RolloutStatus, advance

__all__ = [
    "GateConfig",
    "GateVerdict",
    "OutputSummary",
    "Rollout",
    "RolloutPlan",
    "RolloutStatus",
    "SwapDecision",
    "SwapLimits",
    "UpdateGate",
    "WindowStats",
    "advance",
    "coalesce",
    "evaluate",
    "limit_update",
    "swap_decision",
]
