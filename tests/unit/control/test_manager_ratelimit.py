"""Update rate limits in the manager, on a fake clock: interval, coalescing, busy deferral."""

import pytest

from baton.control.lifecycle import VersionState as S
from baton.control.policy import Load, Serve
from baton.settings import RolloutSettings, UpdateLimitSettings
from tests.unit.control.harness import Harness


def decisions(h):
    return [
        (e.state, e.version, tuple(e.data["skipped"]))
        for e in h.events.recent()
        if e.kind == "rate_limit"
    ]


@pytest.fixture
def h(tmp_path):
    harness = Harness(tmp_path)
    harness.offer(update_limits=UpdateLimitSettings(min_interval=60))
    return harness


async def test_first_version_is_not_held_back(h):
    h.add(1)
    assert await h.settle() == [Load("m", 1), Serve("m", 1)]
    assert decisions(h) == []


async def test_a_burst_of_versions_is_coalesced_to_the_newest_after_the_interval(h):
    h.add(1)
    await h.settle()  # swap from nothing to 1 at t=1000
    h.now += 10
    h.add(2)
    assert await h.settle() == []  # held back: the last swap was 10 s ago
    h.now += 5
    h.add(3)
    h.add(4)
    assert await h.settle() == []
    assert h.default() == 1 and set(h.manager.model("m").versions) == {1}
    h.now += 45  # 60 s after the last swap
    await h.settle()
    assert h.default() == 4 and set(h.manager.model("m").versions) == {1, 4}
    assert h.state(1) is S.UNLOADED  # versions 2 and 3 were never loaded
    assert decisions(h) == [
        ("deferred", 2, ()),
        ("deferred", 4, (2, 3)),
        ("admitted", 4, (2, 3)),
    ]
    admitted = [e for e in h.events.recent() if e.kind == "rate_limit"][-1]
    assert admitted.data["waited"] == pytest.approx(50)


async def test_next_swap_waits_a_full_interval_from_the_last_one(h):
    h.add(1)
    await h.settle()
    h.now += 100
    h.add(2)
    await h.settle()  # more than an interval since the first swap: at once
    assert h.default() == 2 and decisions(h) == [("admitted", 2, ())]
    h.now += 59
    h.add(3)
    await h.settle()
    assert h.default() == 2
    h.now += 1
    await h.settle()
    assert h.default() == 3


async def test_operator_pin_bypasses_the_limiter(h):
    h.add(1)
    await h.settle()
    h.add(2)
    await h.settle()
    assert h.default() == 1
    h.manager.pin("m", 2)
    await h.settle()
    assert h.default() == 2


async def test_a_failed_serving_version_does_not_hold_back_its_replacement(tmp_path):
    h = Harness(tmp_path)
    h.offer(update_limits=UpdateLimitSettings(min_interval=3600))
    h.add(1, fail_load="corrupt weights")
    await h.settle()
    assert h.state(1) is S.FAILED
    h.add(2)
    await h.settle()  # nothing serves, so there is nothing to protect
    assert h.default() == 2 and decisions(h)[-1] == ("admitted", 2, ())


async def test_busy_model_defers_the_swap_until_load_falls(tmp_path):
    h = Harness(tmp_path)
    h.offer(update_limits=UpdateLimitSettings(busy_rps=10, max_defer=300))
    h.add(1)
    await h.settle()
    handle = h.manager.serving_map.get("m").versions[1]
    h.add(2)
    assert await h.settle() == []  # first sample: measuring
    for _ in range(3):  # 100 requests per second
        handle.served += 100
        h.now += 1
        assert await h.settle() == []
    assert decisions(h) == [("deferred", 2, ())]
    h.now += 1  # no requests in this second
    await h.settle()
    assert h.default() == 2 and decisions(h)[-1] == ("admitted", 2, ())


async def test_busy_model_swaps_after_max_defer(tmp_path):
    h = Harness(tmp_path)
    h.offer(update_limits=UpdateLimitSettings(busy_rps=10, max_defer=5))
    h.add(1)
    await h.settle()
    handle = h.manager.serving_map.get("m").versions[1]
    h.add(2)
    await h.settle()
    for _ in range(5):
        handle.served += 100
        h.now += 1
        await h.settle()
    assert h.default() == 2
    assert "maximum" in [e for e in h.events.recent() if e.kind == "rate_limit"][-1].reason


async def test_canary_starts_only_when_the_limiter_admits_the_version(tmp_path):
    h = Harness(tmp_path)
    h.offer(
        update_limits=UpdateLimitSettings(min_interval=60),
        rollout=RolloutSettings(mode="canary", steps=(10, 100), interval=30),
    )
    h.add(1)
    await h.settle()
    h.add(2)
    await h.settle()
    assert h.manager.model("m").rollout is None
    h.now += 60
    await h.settle()
    assert h.manager.model("m").rollout.candidate == 2


async def test_a_pass_ends_while_a_held_back_version_waits_and_the_clock_runs_on(h):
    """Found by bench/fuzz.py: a pass read the clock once, its timers compared against the live
    clock; once a held-back version's wait ran out *during* the pass, the same model came back
    due again and again, and the pass never ended (the event loop stopped answering)."""
    h.add(1)
    await h.settle()
    h.now += 10
    h.add(2)  # held back for 50 s
    reads = 0

    def running_clock() -> float:  # each read is a second later than the one before
        nonlocal reads
        reads += 1
        assert reads < 10_000, "the reconcile pass does not end"
        h.now += 1
        return h.now

    h.manager._clock = h.manager._queue._clock = running_clock
    for _ in range(100):  # the wait (50 s) runs out during one of these passes
        h.manager.tick()
    assert reads < 1_000
