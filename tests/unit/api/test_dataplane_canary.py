"""The data plane during a rollout: weighted and sticky routing, windows, safe candidate."""

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from baton.api.dataplane import DataPlane, InferRequest
from baton.observe.metrics import Metrics
from baton.settings import RolloutSettings
from tests.unit.control.harness import Harness

CANARY = RolloutSettings(mode="canary", steps=(10, 50, 100), interval=30)


@pytest.fixture
async def h(tmp_path):
    harness = Harness(tmp_path)
    harness.offer(rollout=CANARY)
    harness.add(1)
    await harness.settle()
    return harness


def request(value=0.0, session=None, **parameters):
    x = np.full((1, 4), value, np.float32)
    return InferRequest({"x": x}, {"x": "FP32"}, session=session, parameters=parameters)


async def test_unkeyed_traffic_matches_the_weight(h):
    h.add(2)
    await h.settle()
    plane = DataPlane(h.manager, Metrics())
    versions = [(await plane.infer("m", None, request())).model_version for _ in range(400)]
    assert abs(versions.count("2") - 40) <= 3  # 10 %
    explicit = await plane.infer("m", "2", request())
    assert explicit.model_version == "2"  # explicit versions go where they ask


async def test_sticky_sessions_stay_and_only_move_forward(h):
    h.add(2)
    await h.settle()
    plane = DataPlane(h.manager, Metrics())
    sessions = [f"user-{i}" for i in range(300)]

    async def assignment():
        return {
            s: (await plane.infer("m", None, request(session=s))).model_version for s in sessions
        }

    first = await assignment()
    assert await assignment() == first  # the same version every time
    r = h.manager.model("m").rollout
    h.manager.apply_rollout("m", replace(r, step=1))  # 10 % → 50 %
    second = await assignment()
    moved = {s for s in sessions if first[s] != second[s]}
    assert all(first[s] == "1" and second[s] == "2" for s in moved)  # forward only
    assert 0.3 < sum(v == "2" for v in second.values()) / len(sessions) < 0.7
    by_parameter = await plane.infer("m", None, request(session=None, session_key="x"))
    assert by_parameter.model_version in ("1", "2")
    keyed = DataPlane(h.manager, Metrics(), session_parameter="session_key")
    for s in sessions[:20]:
        answer = await keyed.infer("m", None, request(session_key=s))
        assert answer.model_version == second[s]  # the parameter works like the header


async def test_a_failing_candidate_costs_clients_nothing_and_is_counted(h):
    h.add(2, fail_predict=lambda x: bool((x > 100).any()))
    await h.settle()
    plane = DataPlane(h.manager, Metrics())
    answers = [await plane.infer("m", None, request(value=500.0)) for _ in range(200)]
    assert {a.model_version for a in answers} == {"1"}  # every candidate failure retried
    assert all(float(a.outputs[0].data[0, 0]) == 501.0 for a in answers)
    windows = {v: r.handle.window.stats() for v, r in h.manager.model("m").versions.items()}
    assert windows[2].errors == windows[2].requests == 20  # 10 % of 200, all failed
    assert windows[1].errors == 0 and windows[1].requests == 200


async def test_windows_reset_at_each_step_and_vanish_after_the_rollout(h):
    h.add(2)
    await h.settle()
    plane = DataPlane(h.manager, Metrics())
    for _ in range(50):
        await plane.infer("m", None, request())
    handles = {v: r.handle for v, r in h.manager.model("m").versions.items()}
    assert handles[1].window.requests + handles[2].window.requests == 50
    r = h.manager.model("m").rollout
    h.manager.apply_rollout("m", replace(r, step=1))
    assert handles[1].window.requests == handles[2].window.requests == 0
    h.manager.apply_rollout("m", r.promote())
    await h.settle()
    assert h.manager.model("m").versions[2].handle.window is None


SHADOW = RolloutSettings(mode="canary", steps=(0, 100), interval=30, shadow_fraction=1.0)


async def test_shadow_step_answers_with_stable_and_compares_copies(tmp_path):
    h = Harness(tmp_path)
    h.offer(rollout=SHADOW)
    h.add(1)
    await h.settle()
    h.add(2)  # y = x + 2: every shadow answer disagrees with the stable y = x + 1
    await h.settle()
    route = h.manager.serving_map.get("m")
    assert route.canary.shadow and route.canary.weight == 0.0
    plane = DataPlane(h.manager, Metrics())
    answers = []
    for _ in range(30):
        answers.append(await plane.infer("m", None, request(value=1.0)))
        await plane.shadow.drain()
    assert {a.model_version for a in answers} == {"1"}
    assert all(float(a.outputs[0].data[0, 0]) == 2.0 for a in answers)
    stats = h.manager.model("m").versions[2].handle.window.stats()
    assert stats.compared == 30 and stats.agreed == 0 and stats.max_abs_diff == 1.0
    assert stats.requests == 30  # shadow answers feed the candidate's window


async def test_shadow_copies_beyond_the_limit_are_dropped(tmp_path):
    h = Harness(tmp_path)
    h.offer(rollout=SHADOW)
    h.add(1)
    await h.settle()
    h.add(2, offset=1.0, predict_seconds=0.05)
    await h.settle()
    plane = DataPlane(h.manager, Metrics())
    await asyncio.gather(*(plane.infer("m", None, request()) for _ in range(10)))
    await plane.shadow.drain()
    window = h.manager.model("m").versions[2].handle.window
    stats = window.stats()
    assert stats.compared + window.shadow_skipped == 10 and window.shadow_skipped >= 1
    assert stats.agreed == stats.compared
