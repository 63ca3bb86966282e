"""Rollouts in the manager, stepped with tick(): canary start, steps, promotion, rollback."""

from dataclasses import replace

import pytest

from baton.control.lifecycle import VersionState as S
from baton.control.records import RolloutRequest
from baton.errors import Conflict, NotFound
from baton.rollout import RolloutPlan, RolloutStatus
from baton.rollout.gates import GateConfig
from baton.serving.serving_map import Canary
from baton.settings import RolloutSettings, VersionPolicy
from tests.unit.control.harness import Harness

CANARY = RolloutSettings(mode="canary", steps=(1, 10, 100), interval=30)


@pytest.fixture
def h(tmp_path):
    harness = Harness(tmp_path)
    harness.offer(rollout=CANARY)
    return harness


def route(h):
    return h.manager.serving_map.get("m")


def rollout_events(h):
    return [(e.state, e.data["weight"]) for e in h.events.recent() if e.kind == "rollout"]


async def test_canary_mode_starts_a_rollout_instead_of_swapping(h):
    h.add(1)
    await h.settle()
    h.add(2)
    await h.settle()
    assert (h.state(1), h.state(2)) == (S.SERVING, S.SERVING)
    assert h.default() == 1  # the stable version keeps the default
    assert route(h).canary == Canary(stable=1, candidate=2, weight=0.01)
    assert rollout_events(h) == [("RUNNING", 0.01)]
    assert [e for e in h.events.recent() if e.kind == "swap"][-1].version == 1


async def test_steps_then_promotion_retires_the_stable_version(h):
    h.add(1)
    await h.settle()
    h.add(2)
    await h.settle()
    r = h.manager.model("m").rollout
    h.manager.apply_rollout("m", replace(r, step=1))
    assert route(h).canary.weight == 0.10
    h.manager.apply_rollout("m", replace(r, step=2, status=RolloutStatus.PROMOTED))
    await h.settle()
    assert h.default() == 2 and h.state(1) is S.UNLOADED and route(h).canary is None
    assert h.manager.model("m").pinned is None  # the policy picks version 2 by itself
    assert rollout_events(h) == [("RUNNING", 0.01), ("RUNNING", 0.1), ("PROMOTED", 1.0)]
    swaps = [(e.data["from"], e.version) for e in h.events.recent() if e.kind == "swap"]
    assert swaps[-1] == (1, 2)


async def test_rollback_retires_the_candidate_and_does_not_retry_it_unchanged(h):
    h.add(1)
    await h.settle()
    h.add(2)
    await h.settle()
    r = h.manager.model("m").rollout
    h.manager.apply_rollout("m", replace(r, status=RolloutStatus.ROLLED_BACK, reason="errors"))
    await h.settle()
    assert h.default() == 1 and h.state(2) is S.UNLOADED and route(h).canary is None
    h.offer()
    assert await h.settle() == []  # not loaded again while its files are unchanged
    last = [e for e in h.events.recent() if e.kind == "rollout"][-1]
    assert last.state == "ROLLED_BACK" and last.reason == "errors"
    h.add(2)  # new files for version 2: a new chance, as a new rollout
    await h.settle()
    assert h.manager.model("m").rollout.candidate == 2 and route(h).canary.weight == 0.01


async def test_immediate_mode_swaps_without_a_rollout(tmp_path):
    h = Harness(tmp_path)
    h.add(1)
    await h.settle()
    h.add(2)
    await h.settle()
    assert h.default() == 2 and h.manager.model("m").rollout is None


async def test_api_rollout_to_any_version_and_promotion_pins_it(tmp_path):
    h = Harness(tmp_path)  # immediate mode: v2 replaces v1 at once
    h.add(1)
    h.add(2)
    await h.settle()
    assert h.default() == 2 and 1 not in h.manager.model("m").versions  # never loaded
    h.manager.start_rollout("m", 1, RolloutPlan((50, 100), 0), GateConfig(min_requests=1))
    await h.settle()
    assert route(h).canary == Canary(stable=2, candidate=1, weight=0.5)
    r = h.manager.model("m").rollout
    h.manager.apply_rollout("m", replace(r, step=1, status=RolloutStatus.PROMOTED))
    await h.settle()
    assert h.default() == 1 and h.manager.model("m").pinned == 1 and h.state(2) is S.UNLOADED


async def test_api_refusals(h):
    h.add(1)
    await h.settle()
    with pytest.raises(NotFound):
        h.manager.start_rollout("m", 9)
    with pytest.raises(Conflict, match="already the default"):
        h.manager.start_rollout("m", 1)
    h.add(2)
    await h.settle()
    with pytest.raises(Conflict, match="already has a rollout"):
        h.manager.start_rollout("m", 2)


async def test_restored_rollout_resumes_at_its_step(tmp_path):
    h = Harness(tmp_path)
    h.offer(version_policy=VersionPolicy(latest=1))
    h.manager.restore_rollout(
        "m", RolloutRequest(2, RolloutPlan((1, 10, 100), 30), GateConfig(), stable=1, step=1)
    )
    h.add(1)
    h.add(2)
    await h.settle()
    assert (h.state(1), h.state(2)) == (S.SERVING, S.SERVING)
    assert h.default() == 1 and route(h).canary == Canary(1, 2, 0.10)
    assert h.manager.model("m").rollout.step == 1


async def test_promotion_replaces_an_earlier_pin(tmp_path):
    h = Harness(tmp_path)
    h.add(1)
    await h.settle()
    h.manager.pin("m", 1)  # hold version 1 while version 2 is published
    h.add(2)
    await h.settle()
    assert h.default() == 1
    h.manager.start_rollout("m", 2, RolloutPlan((50, 100), 0), GateConfig())
    await h.settle()
    r = h.manager.model("m").rollout
    h.manager.apply_rollout("m", r.promote())
    await h.settle()
    assert h.default() == 2 and h.manager.model("m").pinned is None
    assert h.state(1) is S.UNLOADED
