"""Rollout schedule and gates: pure functions, a fake clock (plain numbers)."""

import pytest

from baton.rollout import (
    GateConfig,
    GateVerdict,
    OutputSummary,
    Rollout,
    RolloutPlan,
    RolloutStatus,
    WindowStats,
    advance,
    evaluate,
)
from baton.rollout.gates import class_drift

PLAN = RolloutPlan((1, 10, 50, 100), interval=30)
PASS, FAIL = GateVerdict.passed(), GateVerdict(failed=True, reasons=("error rate 9%",))
WAIT = GateVerdict(insufficient=True)
R = RolloutStatus


def run(verdicts_at: list[tuple[float, GateVerdict]]) -> list[tuple[R, float]]:
    r = Rollout.start("m", stable=1, candidate=2, plan=PLAN, now=0)
    out = []
    for now, verdict in verdicts_at:
        r = advance(r, now, verdict)
        out.append((r.status, r.weight))
    return out


@pytest.mark.parametrize(
    ("timeline", "expected"),
    [
        # not due yet: stays at 1 %
        ([(10, PASS)], [(R.RUNNING, 0.01)]),
        # each interval passed with healthy gates moves one step; the last step promotes
        (
            [(30, PASS), (60, PASS), (90, PASS), (120, PASS)],
            [(R.RUNNING, 0.10), (R.RUNNING, 0.50), (R.RUNNING, 1.0), (R.PROMOTED, 1.0)],
        ),
        # a step never skips ahead, however late the evaluation comes
        ([(500, PASS)], [(R.RUNNING, 0.10)]),
        # insufficient data holds the step
        ([(30, WAIT), (45, PASS)], [(R.RUNNING, 0.01), (R.RUNNING, 0.10)]),
        # a failing gate rolls back at once, mid-interval, and weight drops to 0
        ([(30, PASS), (31, FAIL)], [(R.RUNNING, 0.10), (R.ROLLED_BACK, 0.0)]),
        # finished rollouts never change again
        ([(5, FAIL), (100, PASS)], [(R.ROLLED_BACK, 0.0), (R.ROLLED_BACK, 0.0)]),
    ],
)
def test_schedule(timeline, expected):
    assert run(timeline) == expected


def test_operator_actions():
    r = Rollout.start("m", 1, 2, PLAN, now=0)
    paused = r.pause()
    assert paused.status is R.PAUSED and advance(paused, 100, PASS) == paused
    resumed = paused.resume(now=100)
    assert advance(resumed, 120, PASS).step == 0  # the interval restarted at resume
    assert advance(resumed, 130, PASS).step == 1
    assert r.promote().status is R.PROMOTED and r.promote().weight == 1.0
    aborted = r.abort()
    assert aborted.status is R.ABORTED and aborted.weight == 0.0
    assert aborted.promote() is aborted and aborted.resume(0) is aborted
    rolled_back = advance(r, 1, FAIL)
    assert rolled_back.reason == "error rate 9%"


@pytest.mark.parametrize(
    ("steps", "interval"),
    [
        ((), 30),
        ((1, 50), 30),
        ((10, 5, 100), 30),
        ((10, 0, 100), 30),
        ((-1, 100), 30),
        ((50, 100), -1),
        ((1, 150), 1),
    ],
)
def test_bad_plans_are_refused(steps, interval):
    with pytest.raises(ValueError):
        RolloutPlan(steps, interval)


CFG = GateConfig(
    max_error_rate=0.02,
    max_p99_ratio=1.5,
    max_class_drift=0.1,
    max_mean_shift=0.5,
    min_requests=100,
)
OK = WindowStats(
    requests=1000,
    errors=2,
    p99=0.010,
    outputs=OutputSummary(mean=1.0, std=0.2, classes={0: 500, 1: 500}),
)


@pytest.mark.parametrize(
    ("candidate", "failed", "insufficient", "reason"),
    [
        (OK, False, False, None),
        (WindowStats(50, 0, 0.01), False, True, None),  # too few requests to judge
        (WindowStats(50, 10, 0.01), True, False, "error rate"),  # ...but errors fail early
        (WindowStats(1000, 30, 0.01, OK.outputs), True, False, "error rate 3.00%"),
        (WindowStats(1000, 0, 0.016, OK.outputs), True, False, "p99 1.60x"),
        (WindowStats(1000, 0, 0.014, OK.outputs), False, False, None),
        (
            WindowStats(1000, 0, 0.01, OutputSummary(1.0, 0.2, {0: 700, 1: 300})),
            True,
            False,
            "predicted classes drifted 0.200",
        ),
        (WindowStats(1000, 0, 0.01, OutputSummary(1.0, 0.2, {0: 550, 1: 450})), False, False, None),
        (
            WindowStats(1000, 0, 0.01, OutputSummary(1.3, 0.2)),
            True,
            False,
            "output mean shifted 1.50",
        ),
        (WindowStats(1000, 0, 0.01, OutputSummary(1.05, 0.2)), False, False, None),
    ],
)
def test_gates(candidate, failed, insufficient, reason):
    stable = (
        OK
        if candidate.outputs is None or candidate.outputs.classes
        else WindowStats(1000, 2, 0.010, OutputSummary(1.0, 0.2))
    )
    verdict = evaluate(stable, candidate, CFG)
    assert (verdict.failed, verdict.insufficient) == (failed, insufficient)
    if reason:
        assert any(r.startswith(reason) for r in verdict.reasons), verdict.reasons


def test_at_full_weight_only_the_candidates_own_errors_are_judged():
    idle_stable = WindowStats(requests=0)
    assert not evaluate(idle_stable, OK, CFG).insufficient
    assert not evaluate(idle_stable, OK, CFG).failed
    assert evaluate(idle_stable, WindowStats(1000, 50, 9.0), CFG).failed


def test_disabled_gates_are_skipped():
    cfg = GateConfig(
        max_error_rate=None,
        max_p99_ratio=None,
        max_class_drift=None,
        max_mean_shift=None,
        min_requests=1,
    )
    bad = WindowStats(100, 100, 10.0, OutputSummary(99, 1, {0: 1}))
    assert not evaluate(OK, bad, cfg).failed


@pytest.mark.parametrize(
    ("compared", "agreed", "failed"),
    [(100, 100, False), (100, 99, False), (100, 98, True), (100, 0, True), (0, 0, False)],
)
def test_shadow_agreement_gate(compared, agreed, failed):
    cfg = GateConfig(min_requests=10, min_shadow_agreement=0.99)
    candidate = WindowStats(requests=100, compared=compared, agreed=agreed, max_abs_diff=0.5)
    verdict = evaluate(WindowStats(requests=100), candidate, cfg)
    assert verdict.failed is failed
    if failed:
        assert verdict.gates == ("shadow_agreement",) and "max abs diff 0.5" in verdict.reasons[0]


def test_drift_gates_allow_for_sampling_noise_of_small_windows():
    cfg = GateConfig(min_requests=10, max_class_drift=0.1, max_mean_shift=0.5, max_p99_ratio=None)
    # Two small samples of the same uniform 4-class behaviour can differ by more than 0.1.
    stable = WindowStats(
        1000, 0, None, OutputSummary(1.0, 1.0, {0: 250, 1: 250, 2: 250, 3: 250}, 4000)
    )
    noisy = WindowStats(200, 0, None, OutputSummary(1.05, 1.0, {0: 30, 1: 70, 2: 45, 3: 55}, 800))
    assert class_drift(stable.outputs.classes, noisy.outputs.classes) > 0.1
    assert not evaluate(stable, noisy, cfg).failed
    # Real drift is still caught at the same sizes.
    drifted = WindowStats(200, 0, None, OutputSummary(1.0, 1.0, {0: 120, 1: 30, 2: 25, 3: 25}, 800))
    assert evaluate(stable, drifted, cfg).gates == ("drift",)
    shifted = WindowStats(200, 0, None, OutputSummary(2.0, 1.0, {0: 50, 1: 50, 2: 50, 3: 50}, 800))
    assert evaluate(stable, shifted, cfg).gates == ("drift",)
    # With only 30 values each, a 0.6 sd shift is within noise; 3 sd is not.
    few = WindowStats(30, 0, None, OutputSummary(0.0, 1.0, None, 30))
    assert not evaluate(
        few, WindowStats(30, 0, None, OutputSummary(0.6, 1.0, None, 30)), cfg
    ).failed
    assert evaluate(few, WindowStats(30, 0, None, OutputSummary(3.0, 1.0, None, 30)), cfg).failed


def test_latency_is_not_judged_on_a_handful_of_requests():
    cfg = GateConfig(min_requests=30, max_p99_ratio=1.5)
    slow = WindowStats(100, 0, 0.050)  # one stall decides a p99 over 100 requests
    assert not evaluate(WindowStats(900, 0, 0.002), slow, cfg).failed
    assert evaluate(WindowStats(900, 0, 0.002), WindowStats(300, 0, 0.050), cfg).gates == (
        "latency",
    )
