"""The rollout controller, pure: a gate check or an operator action → the rollout's next state."""

import pytest

from baton.rollout.controller import check, operate
from baton.rollout.gates import GateConfig, WindowStats
from baton.rollout.schedule import Rollout, RolloutPlan, RolloutStatus

PLAN = RolloutPlan((10, 50, 100), interval=30)
START = Rollout.start("m", 1, 2, PLAN, now=0.0)
GATES = GateConfig(min_requests=10, max_p99_ratio=None, max_mean_shift=None,
                   max_class_drift=None, min_shadow_agreement=None)  # fmt: skip


def stats(requests, errors=0):
    return WindowStats(requests=requests, errors=errors, p99=0.001)


@pytest.mark.parametrize(
    ("rollout", "stable", "candidate", "now", "status", "step", "judged"),
    [
        (START, stats(100), stats(100), 10.0, RolloutStatus.RUNNING, 0, True),  # too early
        (START, stats(100), stats(100), 31.0, RolloutStatus.RUNNING, 1, True),  # next step
        (START, stats(100), stats(5), 31.0, RolloutStatus.RUNNING, 0, True),  # too little data
        (START, stats(100), stats(100, 50), 1.0, RolloutStatus.ROLLED_BACK, 0, True),
        (START, None, stats(100), 31.0, RolloutStatus.RUNNING, 0, False),  # stable not serving
        (START.pause(), stats(100), stats(100), 31.0, RolloutStatus.PAUSED, 0, False),
    ],
)
def test_check(rollout, stable, candidate, now, status, step, judged):
    result = check(rollout, stable, candidate, GATES, now)
    assert (result.rollout.status, result.rollout.step) == (status, step)
    assert (result.verdict is not None) == judged


@pytest.mark.parametrize(
    ("action", "status"),
    [
        ("pause", RolloutStatus.PAUSED),
        ("promote", RolloutStatus.PROMOTED),
        ("abort", RolloutStatus.ABORTED),
        ("resume", RolloutStatus.RUNNING),  # resuming a running rollout changes nothing
    ],
)
def test_operate(action, status):
    assert operate(START, action, now=5.0).status is status


def test_operate_resume_restarts_the_step_clock_and_refuses_unknown_actions():
    assert operate(START.pause(), "resume", now=50.0).step_started == 50.0
    with pytest.raises(ValueError, match="unknown rollout action"):
        operate(START, "skip", now=0.0)
