"""The fleet rollout state machine, stepped with tables of node reports."""

from dataclasses import replace

import pytest

from baton.fleet.rollout import (
    FleetGates,
    NodeModel,
    Target,
    VersionStats,
    desired,
    from_json,
    operate,
    start,
    step,
    to_json,
)

STABLE, CANDIDATE = Target(1, "d1"), Target(2, "d2")
NODES = ("a", "b", "c")


def rollout(**kw):
    r = start("m", STABLE, CANDIDATE, NODES, (1, 2, 3), interval=10, max_loading=1,
              gates=FleetGates(min_requests=10))  # fmt: skip
    return replace(r, **kw)


def serving(version_digest=None, stats=None, failed=None):
    serving = dict([version_digest]) if version_digest else {}
    default = version_digest[0] if version_digest else None
    return {"m": NodeModel(serving, failed or {}, stats or {}, default=default)}


def on_stable(stats=None):
    return serving((1, "d1"), stats)


def on_candidate(stats=None):
    return serving((2, "d2"), stats)


def test_a_wave_waves_nodes_one_loading_at_a_time_then_waits_for_the_interval():
    r = rollout()
    s = step(r, {n: on_stable() for n in NODES}, now=0)
    assert s.rollout.waved == ("a",) and "loading on a" in s.note
    s = step(s.rollout, {"a": on_candidate(), "b": on_stable(), "c": on_stable()}, now=1)
    assert s.rollout.settled_at == 1 and s.rollout.wave == 0
    s = step(s.rollout, {"a": on_candidate(), "b": on_stable(), "c": on_stable()}, now=12)
    assert s.rollout.wave == 1 and s.rollout.settled_at is None
    s = step(s.rollout, {"a": on_candidate(), "b": on_stable(), "c": on_stable()}, now=13)
    assert s.rollout.waved == ("a", "b")


def test_max_loading_bounds_how_many_nodes_load_at_once():
    r = rollout(wave=2, max_loading=2)
    s = step(r, {n: on_stable() for n in NODES}, now=0)
    assert s.rollout.waved == ("a", "b")  # c waits for a slot
    s = step(s.rollout, {"a": on_candidate(), "b": on_stable(), "c": on_stable()}, now=1)
    assert s.rollout.waved == ("a", "b", "c")


def test_the_last_wave_promotes():
    r = rollout(wave=2, waved=NODES, settled_at=0)
    s = step(r, {n: on_candidate() for n in NODES}, now=11)
    assert s.rollout.status == "PROMOTED" and s.rollout.waved == NODES


def test_a_node_that_fails_to_load_rolls_everyone_back():
    r = rollout(wave=1, waved=("a", "b"))
    failed = serving((1, "d1"), failed={2: "load_error"})
    s = step(r, {"a": on_candidate(), "b": failed, "c": on_stable()}, now=5)
    assert s.rollout.status == "ROLLED_BACK" and s.rollout.waved == ()
    assert "version 2 failed on node b: load_error" in s.rollout.reason
    assert desired("a", STABLE, s.rollout) == STABLE


@pytest.mark.parametrize(
    ("candidate", "stable", "verdict"),
    [
        (VersionStats(100, 0, 0.010), VersionStats(100, 0, 0.010), None),
        (VersionStats(100, 5, 0.010), VersionStats(100, 0, 0.010), "error rate 5.00%"),
        (VersionStats(100, 0, 0.030), VersionStats(100, 0, 0.010), "p99 3.00 times"),
        (VersionStats(5, 5, 0.030), VersionStats(100, 0, 0.010), None),  # too little to judge
    ],
)
def test_gates_judge_the_candidates_traffic(candidate, stable, verdict):
    r = rollout(waved=("a",), settled_at=0)
    reports = {"a": on_candidate({2: candidate}), "b": on_stable({1: stable}),
               "c": on_stable({1: stable})}  # fmt: skip
    s = step(r, reports, now=5)
    if verdict is None:
        assert s.rollout.status == "RUNNING"
    else:
        assert s.rollout.status == "ROLLED_BACK" and verdict in s.rollout.reason


def test_a_node_that_went_away_does_not_hold_the_wave():
    r = rollout(wave=1, waved=("a", "b"), max_loading=1)
    s = step(r, {"a": on_candidate(), "c": on_stable()}, now=3)  # b's lease expired
    assert s.rollout.settled_at == 3


def test_paused_and_finished_rollouts_do_not_move_and_round_trip_as_json():
    r = operate(rollout(), "pause", now=0)
    assert step(r, {n: on_stable() for n in NODES}, now=100).rollout == r
    assert operate(r, "resume", now=1).status == "RUNNING"
    aborted = operate(r, "abort", now=2)
    assert aborted.status == "ABORTED" and desired("a", STABLE, aborted) == STABLE
    assert operate(aborted, "resume", now=3) == aborted
    assert from_json(to_json(r)) == r
    with pytest.raises(ValueError, match="unknown action"):
        operate(r, "skip", now=0)


def test_desired_without_a_rollout_is_the_target():
    assert desired("a", CANDIDATE, None) == CANDIDATE
    promoted = replace(rollout(), status="PROMOTED", waved=NODES)
    assert desired("z", CANDIDATE, promoted) == CANDIDATE  # finished: the target decides


def test_a_waved_node_that_cannot_get_the_candidate_rolls_the_rollout_back():
    r = rollout(waved=("a",))
    reports = {"a": {"m": NodeModel({1: "d1"}, {}, {}, "version 2 here has other bytes")},
               "b": on_stable(), "c": on_stable()}  # fmt: skip
    s = step(r, reports, now=0)
    assert s.rollout.status == "ROLLED_BACK" and "cannot take version 2" in s.rollout.reason
    assert s.rollout.waved == ()


def test_no_wave_passes_before_some_node_has_served_the_candidate():
    r = rollout(waved=("a",))
    s = step(r, {"x": on_stable()}, now=100)  # a died while loading; only a newcomer is alive
    assert s.rollout.status == "RUNNING" and s.rollout.wave == 0 and s.rollout.settled_at is None
    s = step(r, {"a": on_candidate(), "b": on_stable()}, now=101)
    assert s.rollout.proven  # once a served it, its death no longer holds the rollout up
    s = step(replace(s.rollout, settled_at=None), {"b": on_stable()}, now=200)
    s = step(s.rollout, {"b": on_stable()}, now=211)
    assert s.rollout.wave == 1


@pytest.mark.parametrize(
    "gates",
    [FleetGates(min_requests=0), FleetGates(max_p99_ratio=0), FleetGates(max_error_rate=2)],
)
def test_gates_that_cannot_judge_are_refused_at_start(gates):
    with pytest.raises(ValueError):
        start("m", STABLE, CANDIDATE, NODES, (1, 3), gates=gates)


def test_a_node_in_its_own_canary_has_not_converged_until_the_candidate_is_its_default():
    r = rollout(waved=("a",), canary_steps=(50.0, 100.0))
    both = {"m": NodeModel({1: "d1", 2: "d2"}, {}, {}, default=1)}  # 50 % on the candidate
    s = step(r, {"a": both, "b": on_stable(), "c": on_stable()}, now=0)
    assert s.rollout.settled_at is None and "loading on a" in s.note
    s = step(s.rollout, {"a": on_candidate(), "b": on_stable(), "c": on_stable()}, now=1)
    assert s.rollout.settled_at == 1
    assert from_json(to_json(s.rollout)).canary_steps == (50.0, 100.0)


@pytest.mark.parametrize(
    ("steps", "stable", "candidate"),
    [((50, 10, 100), STABLE, CANDIDATE), ((10, 50), STABLE, CANDIDATE),
     ((10, 100), CANDIDATE, STABLE)],
)  # fmt: skip
def test_canary_steps_must_grow_to_100_and_lead_to_a_newer_version(steps, stable, candidate):
    with pytest.raises(ValueError):
        start("m", stable, candidate, NODES, (1, 3), canary_steps=steps)


def test_a_node_that_joined_after_the_start_is_taken_by_the_last_wave():
    r = rollout(wave=1, waved=("a", "b"), max_loading=3)
    reports = {"a": on_candidate(), "b": on_candidate(), "c": on_stable(), "new": on_stable()}
    assert "new" not in step(r, reports, now=0).rollout.waved  # not before the last wave
    s = step(replace(r, wave=2), reports, now=0)
    assert s.rollout.waved == ("a", "b", "c", "new")
    assert desired("new", STABLE, s.rollout) == CANDIDATE
