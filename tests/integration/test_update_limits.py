"""Update rate limits on a real server: a burst of versions is coalesced to the newest after the
swap interval, and a busy model's swap waits for load to fall; each decision is in the audit log
and no client request fails."""

from __future__ import annotations

import time

import httpx

from baton.dev.demo import affine_model, write_version
from baton.dev.testing import audit_entries

from .conftest import wait_for
from .traffic import Traffic


def audit(url: str, kind: str) -> list[dict]:
    entries = audit_entries(url)
    return [e for e in entries if e["kind"] == kind]


def default_version(url: str) -> int | None:
    return httpx.get(f"{url}/admin/models/m").json()["default_version"]


def test_a_burst_is_coalesced_to_the_newest_after_the_interval(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    (root / "m" / "model.yaml").write_text("update_limits: {min_interval: 4}\n")
    server = server_factory(root)
    with Traffic(server.url, clients=2) as traffic:
        for version in (2, 3, 4):  # well inside one interval of version 1 going live
            write_version(root / "m", version, affine_model(float(version)))
            time.sleep(0.5)
        assert default_version(server.url) == 1
        wait_for(lambda: default_version(server.url) == 4, timeout=30)
    assert traffic.failures == []
    decisions = audit(server.url, "rate_limit")
    assert decisions[0]["state"] == "deferred"
    assert decisions[-1]["state"] == "admitted" and decisions[-1]["version"] == 4
    assert decisions[-1]["data"]["skipped"] == [2, 3]
    loaded = {e["version"] for e in audit(server.url, "state")}
    assert loaded == {1, 4}  # versions 2 and 3 were never even loaded
    swaps = {e["version"]: e["time"] for e in audit(server.url, "swap")}
    assert swaps[4] - swaps[1] >= 4 - 0.1
    assert {v for _, _, v in traffic.log} == {"1", "4"}


def test_a_busy_model_swaps_once_load_falls(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    (root / "m" / "model.yaml").write_text("update_limits: {busy_rps: 20, max_defer: 120}\n")
    server = server_factory(root)
    with Traffic(server.url, clients=2) as traffic:
        write_version(root / "m", 2, affine_model(2.0))
        wait_for(lambda: audit(server.url, "rate_limit"), timeout=30)
        time.sleep(1.5)
        model = httpx.get(f"{server.url}/admin/models/m").json()
        assert model["default_version"] == 1  # still deferred while traffic flows
        assert model["pending_update"] == {"version": 2, "waiting_for": "busy"}
    assert traffic.failures == [] and len(traffic.log) > 100
    wait_for(lambda: default_version(server.url) == 2, timeout=30)
    deferred, admitted = audit(server.url, "rate_limit")
    assert deferred["state"] == "deferred" and deferred["reason"].startswith("busy")
    assert admitted["state"] == "admitted" and admitted["version"] == 2
    assert admitted["data"]["waited"] >= 1.5
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'baton_update_decisions_total{decision="deferred",model="m"} 1.0' in metrics
    assert 'baton_update_decisions_total{decision="admitted",model="m"} 1.0' in metrics
