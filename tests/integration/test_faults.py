"""Faults a server survives, on real servers: a repository that vanishes for a while under
load, an audit log that cannot be written, and ``kill -9`` in the middle of a load."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import httpx

from baton.artifacts.publish import publish
from baton.artifacts.verify import SNAPSHOT_PREFIX
from baton.dev.demo import affine_model, write_version

from .conftest import served_version, wait_for
from .traffic import Traffic

SLOW_HANDLER = """
import time
from pathlib import Path


class Slow:
    def load(self, path):
        time.sleep(float(Path(path, "seconds.txt").read_text()))
        self.offset = float(Path(path, "offset.txt").read_text())

    def predict(self, inputs):
        return {"y": inputs["x"] + self.offset}

    def unload(self):
        pass
"""
SLOW_YAML = """backend: python
python: {handler: "handler.py:Slow"}
inputs: [{name: x, datatype: FP32, shape: [-1, 4]}]
outputs: [{name: y, datatype: FP32, shape: [-1, 4]}]
"""


def test_a_repository_renamed_away_for_3_s_costs_no_request(server_factory, repo):
    server = server_factory(repo, poll_interval=0.2)
    away = repo.with_name("repo-unmounted")
    with Traffic(server.url) as traffic:
        time.sleep(0.5)
        repo.rename(away)  # an unmounted volume, a network filesystem hiccup
        time.sleep(3)
        away.rename(repo)
        time.sleep(1)
    assert traffic.failures == [] and len(traffic.log) > 100
    assert {version for _, _, version in traffic.log} == {"2"}
    events = httpx.get(f"{server.url}/admin/events", params={"limit": 1000}).json()
    sources = [e["state"] for e in events if e["kind"] == "source"]
    assert sources == ["unavailable", "available"]
    models = httpx.get(f"{server.url}/admin/models/m").json()
    assert [v["state"] for v in models["versions"]] == ["AVAILABLE", "SERVING"]


def test_an_audit_log_that_cannot_be_written_never_stops_inference(server_factory, repo,
                                                                   tmp_path):  # fmt: skip
    full = tmp_path / "audit.jsonl"
    full.symlink_to("/dev/full")  # every write fails with ENOSPC: a full disk
    server = server_factory(repo, env={"BATON_AUDIT_LOG": str(full)})
    assert served_version(server.url) == "2"
    write_version(repo / "m", 3, affine_model(3.0))
    wait_for(lambda: served_version(server.url) == "3")
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    events = httpx.get(f"{server.url}/admin/events", params={"limit": 1000}).json()
    audit = [e for e in events if e["kind"] == "audit"]
    assert audit[0]["state"] == "failing" and "No space left" in audit[0]["message"]
    errors = [line for line in httpx.get(f"{server.url}/metrics").text.splitlines()
              if line.startswith("baton_audit_write_errors_total")]  # fmt: skip
    assert errors and float(errors[0].split()[-1]) > 10


def test_kill_9_during_a_load_then_a_restart_converges(server_factory, tmp_path):
    root = tmp_path / "repo"
    source = tmp_path / "src"
    source.mkdir()
    (root / "m").mkdir(parents=True)
    (root / "m" / "model.yaml").write_text(SLOW_YAML)
    for version, seconds in ((1, "0"), (2, "30")):
        (source / "handler.py").write_text(SLOW_HANDLER)
        (source / "offset.txt").write_text(str(version))
        (source / "seconds.txt").write_text(seconds)
        publish(source, root, "m", version=version)  # with a manifest: loads a verified copy
    server = server_factory(root, wait_ready=False)
    wait_for(lambda: _state(server.url, 2) == "LOADING", timeout=60)
    copies = set(Path(tempfile.gettempdir()).glob(f"{SNAPSHOT_PREFIX}{server.process.pid}-*"))
    assert copies, "version 2 loads from a verified copy"
    server.process.send_signal(signal.SIGKILL)
    assert server.process.wait(10) == -signal.SIGKILL
    assert all(path.exists() for path in copies)  # left behind by the dead server

    # Republish version 2 as a quick load: the restarted server converges on it.
    (root / "m" / "2").rename(root / "m" / ".2.old")
    (source / "seconds.txt").write_text("0")
    (source / "offset.txt").write_text("2")
    publish(source, root, "m", version=2)
    restarted = server_factory(root)
    assert served_version(restarted.url) == "2"
    assert not any(path.exists() for path in copies)  # cleaned up at start
    entries = httpx.get(f"{restarted.url}/admin/audit", params={"limit": 1000}).json()
    assert entries["entries"]  # the log of both runs reads back (a torn line is skipped)
    assert os.path.exists(root / ".baton" / "settings" / "m.json")  # settings kept for restarts


def _state(url: str, version: int) -> str | None:
    try:
        doc = httpx.get(f"{url}/admin/models/m", timeout=2).json()
    except (httpx.TransportError, ValueError):
        return None
    return next((v["state"] for v in doc.get("versions", []) if v["version"] == version), None)
