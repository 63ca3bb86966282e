"""Safe rollouts: staged canary schedule, metric gates and swap rate limits (pure logic).

The rollout controller that drives these from live metrics plugs in beside the manager.
"""

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
