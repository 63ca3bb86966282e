"""Rollouts driven by the manager on its own clock: gate checks every rollout_period seconds
while a rollout runs, operator actions, and resuming from the audit log. A fake clock and
in-process traffic."""

from dataclasses import replace

import numpy as np
import pytest

from baton.api.dataplane import DataPlane, InferRequest
from baton.control.resume import resume_from_audit
from baton.errors import Conflict
from baton.observe.audit import AuditLog
from baton.observe.metrics import Metrics
from baton.settings import GateSettings, RolloutSettings
from tests.unit.control.harness import Harness

# In-process latencies are microseconds of noise: the latency gate is tested in test_rollout.py.
SETTINGS = RolloutSettings(
    mode="canary",
    steps=(10, 50, 100),
    interval=10,
    gates=GateSettings(min_requests=20, max_p99_ratio=None),
)


@pytest.fixture
async def setup(tmp_path):
    h = Harness(tmp_path)  # its fake clock, h.now, is the manager's: tests move it by hand
    h.offer(rollout=SETTINGS)
    h.add(1)
    await h.settle()
    return h, DataPlane(h.manager, Metrics())


async def later(h, seconds):
    """Let ``seconds`` pass on the manager's clock and reconcile (gate checks fall due)."""
    h.now += seconds
    await h.settle()


async def traffic(plane, n, value=0.0):
    x = np.full((1, 4), value, np.float32)
    return [
        (await plane.infer("m", None, InferRequest({"x": x}, {"x": "FP32"}))).model_version
        for _ in range(n)
    ]


def statuses(h):
    return [(e.state, e.data["weight"]) for e in h.events.recent() if e.kind == "rollout"]


async def test_healthy_candidate_is_promoted_step_by_step(setup):
    h, plane = setup
    h.add(2, offset=1.0)  # a new version that answers like the stable one
    await h.settle()
    for _ in range(4):  # each step, 100 % included: enough traffic, then the interval passes
        await traffic(plane, 300)
        await later(h, 11)
    assert statuses(h) == [("RUNNING", 0.1), ("RUNNING", 0.5), ("RUNNING", 1.0), ("PROMOTED", 1.0)]
    assert h.default() == 2 and h.manager.model("m").rollout is None
    last = [e for e in h.events.recent() if e.kind == "rollout"][-1]
    assert last.data["verdict"]["failed"] is False  # the gate result travels with the step


async def test_failing_candidate_is_rolled_back_within_one_step(setup):
    h, plane = setup
    h.add(2, fail_predict=lambda x: bool((x > 100).any()))
    await h.settle()
    answers = await traffic(plane, 300, value=500.0)
    assert set(answers) == {"1"}  # clients never saw the candidate's failures
    await later(h, 1)  # the next gate check, not the step interval: a failed gate acts at once
    last = [e for e in h.events.recent() if e.kind == "rollout"][-1]
    assert last.state == "ROLLED_BACK" and "error rate" in last.reason
    assert last.data["failed_gates"] == ["error_rate"]
    assert h.default() == 1 and h.manager.model("m").versions[2].state.value == "UNLOADED"


async def test_too_little_traffic_holds_the_step(setup):
    h, plane = setup
    h.add(2)
    await h.settle()
    await traffic(plane, 5)
    await later(h, 60)
    assert h.manager.model("m").rollout.step == 0
    assert h.manager.model("m").last_verdict.insufficient


async def test_operator_actions(setup):
    h, plane = setup
    with pytest.raises(Conflict):
        h.manager.rollout_action("m", "pause")
    h.add(2)
    await h.settle()
    assert h.manager.rollout_action("m", "pause").status.value == "PAUSED"
    await traffic(plane, 300)
    await later(h, 60)
    assert h.manager.model("m").rollout.step == 0  # paused: no progress
    h.manager.rollout_action("m", "resume")
    h.manager.rollout_action("m", "abort")
    await h.settle()
    assert h.default() == 1 and h.manager.model("m").rollout is None
    assert h.state(2).value == "UNLOADED"  # the aborted candidate is retired


async def test_resume_from_audit_log(tmp_path):
    h = Harness(tmp_path)
    log = AuditLog(tmp_path / "audit.jsonl")
    h.events.subscribe(log.on_event)
    h.offer(rollout=SETTINGS)
    h.add(1)
    await h.settle()
    h.add(2)
    await h.settle()
    r = h.manager.model("m").rollout
    h.manager.apply_rollout("m", replace(r, step=1))
    log.close()
    fresh = Harness(tmp_path)  # a "restarted" server over the same files and audit log
    assert resume_from_audit(fresh.manager, tmp_path / "audit.jsonl") == ["m"]
    fresh.versions = h.versions
    fresh.offer()
    await fresh.settle()
    route = fresh.manager.serving_map.get("m")
    assert route.canary is not None and route.canary.weight == 0.5 and route.default == 1
