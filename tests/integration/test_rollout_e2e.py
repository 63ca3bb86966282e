"""Rollouts end to end on a real server: a healthy canary reaches 100 %, an erroring or drifting
one is rolled back within one step — with zero client-visible failures either way — traffic
shares follow the weights, sticky sessions only ever move forward, and a kill -9 mid-rollout
resumes from the last recorded step."""

from __future__ import annotations

import signal
import time
from itertools import pairwise

import httpx

from baton.dev.demo import affine_model, fragile_model, write_version
from baton.dev.testing import audit_entries

from .conftest import wait_for
from .traffic import SESSIONS, Traffic

ROLLOUT_YAML = """\
rollout:
  mode: canary
  steps: [10, 50, 100]
  interval: {interval}
  gates: {{min_requests: 30, max_p99_ratio: 20}}
"""
FAST = {"BATON_ROLLOUT_PERIOD": "0.2"}


def rollout_events(url: str) -> list[dict]:
    entries = audit_entries(url)
    return [e for e in entries if e["kind"] == "rollout"]


def test_healthy_canary_reaches_100_percent(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    (root / "m" / "model.yaml").write_text(ROLLOUT_YAML.format(interval=2.0))
    server = server_factory(root, env=FAST)
    with Traffic(server.url) as traffic:
        time.sleep(0.5)
        write_version(root / "m", 2, affine_model(1.0, scale=1.0))  # same answers: healthy
        wait_for(
            lambda: any(e["state"] == "PROMOTED" for e in rollout_events(server.url)), timeout=60
        )
        time.sleep(0.5)
    assert traffic.failures == []
    events = rollout_events(server.url)
    assert [(e["state"], e["data"]["weight"]) for e in events] == [
        ("RUNNING", 0.1),
        ("RUNNING", 0.5),
        ("RUNNING", 1.0),
        ("PROMOTED", 1.0),
    ]
    # unkeyed traffic followed each step's weight
    bounds = [e["time"] for e in events]
    for (start, end), weight in zip(pairwise(bounds), (0.1, 0.5, 1.0), strict=True):
        inside = [v for t, s, v in traffic.log if s is None and start + 0.05 < t < end - 0.05]
        share = inside.count("2") / len(inside)
        assert abs(share - weight) < 0.06, (weight, share, len(inside))
    # a session never moved back from the candidate to the stable version
    for session in SESSIONS:
        seen = [v for _, s, v in sorted(traffic.log) if s == session]
        if "2" in seen:
            assert "1" not in seen[seen.index("2") :], session
    model = httpx.get(f"{server.url}/admin/models/m").json()
    assert model["default_version"] == 2
    weights = httpx.get(f"{server.url}/metrics").text
    assert 'baton_rollout_weight{model="m",version="2"} 1.0' in weights


def test_erroring_canary_is_rolled_back_with_no_client_failures(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    (root / "m" / "model.yaml").write_text(ROLLOUT_YAML.format(interval=30))
    server = server_factory(root, env=FAST)
    with Traffic(server.url, value=50.0) as traffic:  # x = 50: the fragile version fails
        time.sleep(0.5)
        write_version(root / "m", 2, fragile_model(1.0))
        wait_for(
            lambda: any(e["state"] == "ROLLED_BACK" for e in rollout_events(server.url)), timeout=30
        )
        time.sleep(0.5)
    assert traffic.failures == []
    assert {v for _, _, v in traffic.log} == {"1"}  # every candidate failure was retried
    back = next(e for e in rollout_events(server.url) if e["state"] == "ROLLED_BACK")
    assert back["data"]["step"] == 0 and "error rate" in back["reason"]  # within one step
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'baton_rollbacks_total{model="m",reason="error_rate"} 1.0' in metrics
    wait_for(
        lambda: (
            {
                v["version"]: v["state"]
                for v in httpx.get(f"{server.url}/admin/models/m").json()["versions"]
            }[2]
            == "UNLOADED"
        )
    )


def test_drifting_canary_is_rolled_back(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    (root / "m" / "model.yaml").write_text(ROLLOUT_YAML.format(interval=30))
    server = server_factory(root, env=FAST)
    with Traffic(server.url) as traffic:
        time.sleep(0.5)
        write_version(root / "m", 2, affine_model(40.0))  # answers far from the stable ones
        wait_for(
            lambda: any(e["state"] == "ROLLED_BACK" for e in rollout_events(server.url)), timeout=30
        )
    assert traffic.failures == []
    back = next(e for e in rollout_events(server.url) if e["state"] == "ROLLED_BACK")
    assert back["data"]["failed_gates"] == ["drift"] and back["data"]["step"] == 0
    assert httpx.get(f"{server.url}/admin/models/m").json()["default_version"] == 1


def test_kill_9_mid_rollout_resumes_from_the_last_step(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    write_version(root / "m", 2, affine_model(1.0))
    (root / "m" / "model.yaml").write_text(
        "version_policy: {specific: [1]}\nrollout: {gates: {min_requests: 30, max_p99_ratio: 20}}\n"
    )
    server = server_factory(root, env=FAST)
    r = httpx.post(
        f"{server.url}/admin/models/m/rollout",
        json={"version": 2, "steps": [10, 50, 100], "interval": 1.5},
    )
    assert r.status_code == 200, r.text
    rollout = lambda url: httpx.get(f"{url}/admin/models/m/rollout").json()["rollout"]  # noqa: E731
    with Traffic(server.url):
        wait_for(lambda: (rollout(server.url) or {}).get("step", 0) >= 1, timeout=60)
        assert httpx.post(f"{server.url}/admin/models/m/rollout/pause").status_code == 200
    recorded = rollout_events(server.url)[-1]
    assert recorded["state"] == "PAUSED"
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)

    restarted = server_factory(root, env=FAST)
    view = wait_for(lambda: rollout(restarted.url), timeout=60)
    step = recorded["data"]["step"]
    assert (view["stable"], view["candidate"], view["step"], view["status"]) == (
        1,
        2,
        step,
        "PAUSED",
    )
    assert view["weight"] == [0.1, 0.5, 1.0][step]
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0] * 4}]}
    versions = {
        httpx.post(f"{restarted.url}/v2/models/m/infer", json=body).json()["model_version"]
        for _ in range(40)
    }
    assert versions == ({"1", "2"} if step < 2 else {"2"})  # the split is live again
    resumed = httpx.post(f"{restarted.url}/admin/models/m/rollout/resume").json()["rollout"]
    assert resumed["status"] == "RUNNING" and resumed["step"] == step
