"""The audit log survives a kill -9 of the server, and a restarted server appends to it."""

from __future__ import annotations

import signal
import time

import httpx

from baton.dev.demo import affine_model, write_version
from baton.observe.audit import read_audit_log

from .conftest import wait_for


def test_audit_log_is_intact_after_kill_9_and_appended_after_restart(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    server = server_factory(root)
    for v in (2, 3):
        write_version(root / "m", v, affine_model(float(v)))
        wait_for(
            lambda v=v: httpx.get(f"{server.url}/v2/models/m/versions/{v}/ready").status_code == 200
        )
    wait_for(
        lambda: any(
            e["state"] == "UNLOADED" and e["version"] == 2
            for e in httpx.get(f"{server.url}/admin/audit", params={"limit": 500}).json()["entries"]
        )
    )
    server.process.send_signal(signal.SIGKILL)
    assert server.process.wait(10) == -signal.SIGKILL

    path = root / ".baton" / "audit.jsonl"
    entries, torn = read_audit_log(path)
    assert torn == 0
    states = [(e["version"], e["state"]) for e in entries if e["kind"] == "state"]
    for v in (1, 2, 3):
        assert (v, "SERVING") in states
    assert (2, "UNLOADED") in states
    assert [e["version"] for e in entries if e["kind"] == "swap"] == [1, 2, 3]

    restarted = server_factory(root)  # the same repository, so the same audit log
    wait_for(lambda: httpx.get(f"{restarted.url}/v2/models/m/ready").status_code == 200)
    time.sleep(0.2)
    after, torn = read_audit_log(path)
    assert torn == 0 and after[: len(entries)] == entries  # nothing lost or rewritten
    assert (3, "SERVING") in [(e["version"], e["state"]) for e in after[len(entries) :]]
    api = httpx.get(f"{restarted.url}/admin/audit", params={"limit": 1000}).json()
    assert api["torn_lines"] == 0 and len(api["entries"]) >= len(after)
