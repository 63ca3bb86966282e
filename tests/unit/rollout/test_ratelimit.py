"""Update rate limits: swap decisions, coalescing and the load meter, on a fake clock."""

import pytest

from baton.rollout.ratelimit import (
    LoadMeter,
    RateLimitDecision,
    SwapLimits,
    UpdateGate,
    coalesce,
    limit_update,
    swap_decision,
)

INTERVAL = SwapLimits(min_interval=10)
BUSY = SwapLimits(busy_threshold=10, max_defer=60)


@pytest.mark.parametrize(
    ("now", "last_swap", "pending_since", "load", "limits", "go", "kind", "wait"),
    [
        (100, None, 100, 0, SwapLimits(), True, "", 0),
        (100, 95, 100, 0, INTERVAL, False, "rate_limit", 5),  # the rest of the interval
        (100, 90, 100, 0, INTERVAL, True, "", 0),  # exactly one interval later
        (100, None, 100, 0, INTERVAL, True, "", 0),  # never swapped before
        (100, None, 100, 50, BUSY, False, "busy", 1),  # re-checked every second
        (100, None, 100, 5, BUSY, True, "", 0),
        (100, None, 100, 10, BUSY, True, "", 0),  # at the threshold is not above it
        (100, None, 100, None, BUSY, False, "measuring", 1),  # no rate measured yet
        (100, None, 99.5, 50, BUSY, False, "busy", 1),
        (100, None, 40, 50, BUSY, True, "busy", 0),  # deferred the maximum: go anyway
        (100, None, 40, None, BUSY, True, "busy", 0),
        (100, None, 100, 50, SwapLimits(), True, "", 0),  # busy deferral not configured
        (100, 95, 30, 50, SwapLimits(min_interval=10, busy_threshold=10), False, "rate_limit", 5),
        (
            100,
            None,
            99.5,
            50,
            SwapLimits(busy_threshold=10, max_defer=1),
            False,
            "busy",
            0.5,  # never past max_defer
        ),
    ],
)
def test_swap_decision(now, last_swap, pending_since, load, limits, go, kind, wait):
    decision = swap_decision(now, last_swap, pending_since, load, limits)
    assert (decision.go, decision.kind) == (go, kind)
    assert decision.wait == pytest.approx(wait)
    assert bool(decision.reason) == bool(kind)


def test_coalesce_takes_the_newest():
    assert coalesce([3, 7, 5]) == 7 and coalesce([]) is None


def test_first_offer_is_admitted_silently():
    step = limit_update(UpdateGate(), [1, 2, 3], False, 0, None, INTERVAL)
    assert step.gate.admitted == 3 and step.event is None and step.wait is None


def test_nothing_newer_clears_the_pending_state():
    gate = UpdateGate(admitted=3, pending_since=5, announced=(4, "busy"))
    step = limit_update(gate, [2, 3], True, 10, None, INTERVAL)
    assert step.gate == UpdateGate(admitted=3) and step.event is None


def test_without_limits_new_versions_are_admitted_silently():
    step = limit_update(UpdateGate(admitted=1, last_swap=99), [1, 2], True, 100, 1e6, SwapLimits())
    assert step.gate.admitted == 2 and step.event is None


def test_a_burst_waits_for_the_interval_then_coalesces_to_the_newest():
    gate = UpdateGate(admitted=1, last_swap=100)
    step = limit_update(gate, [1, 2], True, 101, None, INTERVAL)
    assert step.gate.admitted == 1 and step.wait == pytest.approx(9)
    assert step.event == RateLimitDecision(
        "deferred", 2, "rate limit: one swap per 10 s", (), 0, pytest.approx(9)
    )
    again = limit_update(step.gate, [1, 2], True, 102, None, INTERVAL)
    assert again.event is None  # the same deferral is reported once
    burst = limit_update(again.gate, [1, 2, 3, 4], True, 103, None, INTERVAL)
    assert burst.event.version == 4 and burst.event.skipped == (2, 3)
    go = limit_update(burst.gate, [1, 2, 3, 4], True, 110, None, INTERVAL)
    assert go.gate.admitted == 4 and go.wait is None
    assert go.event.decision == "admitted" and go.event.skipped == (2, 3)
    assert go.event.waited == pytest.approx(9)  # pending since t=101


def test_nothing_serving_admits_at_once():
    gate = UpdateGate(admitted=1, last_swap=100)
    step = limit_update(gate, [1, 2], False, 101, None, INTERVAL)
    assert step.gate.admitted == 2 and step.event.reason == "nothing serving"


def test_busy_model_defers_until_load_falls():
    gate = UpdateGate(admitted=1)
    measuring = limit_update(gate, [1, 2], True, 0, None, BUSY)
    assert measuring.event is None and measuring.wait == 1  # a measurement, not a decision
    busy = limit_update(measuring.gate, [1, 2], True, 1, 50, BUSY)
    assert busy.event.decision == "deferred" and busy.event.reason.startswith("busy")
    quiet = limit_update(busy.gate, [1, 2], True, 7, 3, BUSY)
    assert quiet.gate.admitted == 2 and quiet.event.waited == 7


def test_busy_model_swaps_after_the_maximum_deferral():
    gate = UpdateGate(admitted=1, pending_since=0, announced=(2, "busy"))
    step = limit_update(gate, [1, 2], True, 60, 500, BUSY)
    assert step.gate.admitted == 2 and "maximum" in step.event.reason


@pytest.mark.parametrize(
    ("samples", "rates"),
    [
        ([(0, 0)], [None]),
        ([(0, 0), (1, 100)], [None, 100]),
        ([(0, 0), (0.2, 50), (1, 100)], [None, None, 100]),  # too close to measure
        ([(0, 0), (1, 100), (1.2, 200), (2, 300)], [None, 100, 100, 200]),
        ([(0, 50), (1, 10)], [None, 0]),  # a handle went away: never negative
    ],
)
def test_load_meter(samples, rates):
    meter = LoadMeter(period=0.5)
    assert [meter.rate("m", t, n) for t, n in samples] == [
        pytest.approx(r) if r is not None else None for r in rates
    ]


def test_load_meter_forgets_quiet_spells():
    meter = LoadMeter()
    meter.rate("m", 0, 0)
    meter.forget("m")
    assert meter.rate("m", 3600, 10) is None
