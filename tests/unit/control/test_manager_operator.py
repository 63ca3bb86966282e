"""Operator actions that do what they say, and a version policy that falls back past bad
versions (issue 10's reproductions, each at the manager)."""

import pytest

from baton.control.lifecycle import VersionState as S
from baton.errors import NotFound
from baton.rollout.schedule import RolloutPlan
from baton.settings import VersionPolicy
from tests.unit.control.harness import Harness

PLAN = RolloutPlan((10, 100), interval=60)


@pytest.fixture
def h(tmp_path):
    return Harness(tmp_path)


def events(h, kind):
    return [e for e in h.events.recent(1000) if e.kind == kind]


async def test_an_aborted_version_can_be_rolled_out_again_or_pinned(h):
    """Item 1: after `rollout start --to 1` and `abort`, version 1 is set aside from the version
    policy only; naming it again (rollout start, pin) brings it back."""
    h.add(1)
    h.add(2)
    await h.settle()
    h.manager.start_rollout("m", 1, PLAN)
    await h.settle()
    h.manager.rollout_action("m", "abort")
    await h.settle()
    assert h.state(1) is S.UNLOADED and h.default() == 2
    assert h.manager.model("m").rejected_now() == {1}

    h.manager.start_rollout("m", 1, PLAN)  # was: 404 "no complete version 1"
    await h.settle()
    assert h.manager.model("m").rollout.candidate == 1 and h.state(1) is S.SERVING
    h.manager.rollout_action("m", "abort")
    await h.settle()

    h.manager.pin("m", 1)  # was: accepted, shown as pinned, and never loaded
    await h.settle()
    assert h.default() == 1 and await h.infer() == (1, 1.0)
    assert h.manager.model("m").pending_pin is None


async def test_abort_retires_the_candidate_even_when_the_newest_version_failed(h):
    """Item 2: versions 5 and 6 good, 7 broken; a rollout to 5 aborted leaves 6 alone serving."""
    for v in (5, 6):
        h.add(v)
    h.add(7, fail_load="truncated")
    await h.settle()
    assert h.default() == 6 and h.state(7) is S.FAILED
    h.manager.start_rollout("m", 5, PLAN)
    await h.settle()
    h.manager.rollout_action("m", "abort")
    await h.settle()
    assert h.manager.model("m").serving() == [6]
    assert 5 not in h.manager.serving_map.get("m").versions  # /versions/5/infer: not serving


@pytest.mark.parametrize(("latest", "serving"), [(1, [6]), (2, [5, 6])])
async def test_a_bad_newest_version_at_start_falls_back_to_the_newest_that_load(h, latest, serving):
    """Item 9: a restart with versions 5, 6 (good) and 7 (truncated) serves 6, not nothing."""
    h.offer(version_policy=VersionPolicy(latest=latest))
    for v in (5, 6):
        h.add(v)
    h.add(7, fail_load="truncated")
    await h.settle()
    assert h.manager.model("m").serving() == serving and h.default() == 6
    fallback = events(h, "fallback")
    assert [e.version for e in fallback] == [7]
    assert "falls back to version" in fallback[0].message and fallback[0].reason == "load_error"


async def test_a_fixed_newest_version_is_loaded_again(h):
    h.add(6)
    h.add(7, fail_load="truncated")
    await h.settle()
    assert h.default() == 6
    h.add(7)  # republished with new files
    await h.settle()
    assert h.default() == 7 and h.state(6) is S.UNLOADED


async def test_a_pin_whose_version_fails_is_refused_and_reverted(h):
    h.add(1, fail_load="corrupt")
    await h.settle()
    h.add(2)
    await h.settle()
    assert h.default() == 2 and h.state(1) is S.FAILED
    h.manager.pin("m", 1)  # a FAILED version named by an operator is tried again ...
    await h.settle()
    m = h.manager.model("m")
    assert m.pinned is None and m.pending_pin is None  # ... and the pin refused when it fails
    refused = [e for e in events(h, "pin") if e.state == "refused"]
    assert refused and "refused" in refused[-1].message and refused[-1].reason == "load_error"
    assert h.default() == 2 and len(h.runtimes_of("m")) == 3  # 1 tried twice, 2 once


async def test_a_rollback_that_fails_keeps_the_earlier_pin(h):
    h.add(1)
    h.add(2)
    await h.settle()
    h.manager.pin("m", 2)
    await h.settle()
    h.behaviour[("m", 1)] = {"fail_load": "gone bad"}
    h.manager.rollback("m")
    await h.settle()
    assert h.manager.model("m").pinned == 2 and h.default() == 2


async def test_pin_and_label_need_a_version_the_source_offers(h):
    h.add(1)
    await h.settle()
    with pytest.raises(NotFound, match=r"no complete version 9 .*complete versions: 1"):
        h.manager.pin("m", 9)
    with pytest.raises(NotFound):
        h.manager.set_label("m", "stable", 9)


async def test_a_model_whose_versions_all_vanish_keeps_serving(h):
    """An emptied model directory is not an operator's unload: the last version keeps serving
    (only disabling the model or removing it from the source unloads it)."""
    h.add(1)
    await h.settle()
    h.withdraw(1)
    await h.settle()
    assert h.default() == 1 and h.state(1) is S.SERVING
    h.manager.set_enabled("m", False)
    await h.settle()
    assert h.manager.serving_map.get("m").default is None
