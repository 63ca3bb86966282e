"""Sequences through swaps on a real server, every answer checked against its ground truth.

Closed-loop clients run sequences of a running-sum model (each answer depends on the whole
history and on the version's constant) while new versions are published, a canary promotes
and a canary is aborted: 0 failed requests and 0 broken sequences in ``drain`` mode (a
sequence stays on the version that started it) and in ``migrate`` mode (its state moves to the
new version, through the version's migrate hook). ``bench/sequences.py`` runs the same at full
size (200 sequences of 50 steps, a swap every 2 s for 60 s).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx

from baton.dev.sequence_traffic import SequenceRun, drive, write_sequence_version
from baton.dev.testing import audit_entries

from .conftest import wait_for

STATE = "  state: [{input: h_in, output: h_out, dtype: FP32, shape: [64]}]\n"
CONCURRENCY, STEPS = 24, 20
RELAXED_GATES = (
    "{min_requests: 20, max_p99_ratio: 50, max_mean_shift: null, max_class_drift: null, "
    "max_error_rate: 0.5}"
)


class Publisher:
    """Publishes version 2, 3, ... every ``interval`` seconds while the block runs."""

    def __init__(self, model_dir: Path, interval: float, hook: bool = False) -> None:
        self.model_dir, self.interval, self.hook = model_dir, interval, hook
        self.published = [1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Publisher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            version = self.published[-1] + 1
            write_sequence_version(self.model_dir, version, hook=self.hook)
            self.published.append(version)


def start(server_factory, root: Path, yaml: str, hook: bool = False):
    model_dir = root / "acc"
    write_sequence_version(model_dir, 1, hook=hook)
    (model_dir / "model.yaml").write_text(yaml)
    return model_dir, server_factory(root, env={"BATON_ROLLOUT_PERIOD": "0.2"})


def run_sequences(url: str, duration: float, mode: str, hook: bool = False) -> SequenceRun:
    traffic = drive(
        url, "acc", concurrency=CONCURRENCY, steps=STEPS, duration=duration, mode=mode, hook=hook
    )
    return asyncio.run(traffic)


def run_while(url: str, duration: float, delay: float, action) -> SequenceRun:
    """Drain-mode sequences for ``duration`` seconds; ``action()`` runs ``delay`` s in."""
    timer = threading.Timer(delay, action)
    timer.start()
    try:
        return run_sequences(url, duration, "drain")
    finally:
        timer.join()


def rollout_states(url: str) -> list[str]:
    return [e["state"] for e in audit_entries(url) if e["kind"] == "rollout"]


def assert_whole(run: SequenceRun) -> None:
    assert run.failed == 0 and run.broken == 0, run.problems
    assert run.sequences >= CONCURRENCY


def unloaded(url: str) -> list[dict]:
    return [e for e in audit_entries(url) if e["kind"] == "state" and e["state"] == "UNLOADED"]


def batched_rows(url: str) -> tuple[float, float]:
    """(backend calls, rows) of the model's dynamic batches so far."""
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    value = lambda name: sum(  # noqa: E731
        float(line.split()[-1]) for line in lines if line.startswith(f"{name}{{")
    )
    return value("baton_batch_size_count"), value("baton_batch_size_sum")


def test_drain_mode_keeps_every_sequence_on_its_version_through_swaps(server_factory, tmp_path):
    yaml = f"max_batch_size: 8\nsequence:\n{STATE}  swap: drain\n"
    model_dir, server = start(server_factory, tmp_path / "repo", yaml)
    with Publisher(model_dir, 1.0) as publisher:
        run = run_sequences(server.url, 5.0, "drain")
    assert_whole(run)
    assert len(publisher.published) >= 4 and len(run.versions) >= 3, run.versions
    # every retired version waited for its sequences, none was cut short
    wait_for(lambda: len(unloaded(server.url)) >= len(publisher.published) - 1, timeout=30)
    for event in unloaded(server.url):
        assert event["reason"] is None and event["data"]["sequences_cut"] == 0, event
    assert sum(e["data"]["sequences"] for e in unloaded(server.url)) > 0
    calls, rows = batched_rows(server.url)  # steps of different sequences shared batches
    assert calls > 0 and rows > calls * 1.2, (calls, rows)


def test_migrate_mode_carries_state_through_the_hook(server_factory, tmp_path):
    yaml = f"sequence:\n{STATE}  swap: migrate\n  migrate_hook: migrate.py\n"
    model_dir, server = start(server_factory, tmp_path / "repo", yaml, hook=True)
    with Publisher(model_dir, 1.0, hook=True):
        run = run_sequences(server.url, 5.0, "migrate", hook=True)
    assert_whole(run)
    assert run.moved > 0  # sequences changed version mid-way, their state carried over
    migrations = [e for e in audit_entries(server.url) if e["kind"] == "sequences"]
    assert sum(sum(e["data"]["migrated"].values()) for e in migrations) >= run.moved
    assert all(not e["data"]["stayed"] for e in migrations), migrations


def test_a_canary_assigns_whole_sequences_and_promotes_without_breaking_one(
    server_factory, tmp_path
):
    yaml = (
        f"sequence:\n{STATE}  swap: drain\n"
        f"rollout: {{mode: canary, steps: [20, 50, 100], interval: 1s, gates: {RELAXED_GATES}}}\n"
    )
    model_dir, server = start(server_factory, tmp_path / "repo", yaml)

    run = run_while(server.url, 6.0, 0.5, lambda: write_sequence_version(model_dir, 2))
    assert_whole(run)
    assert run.versions == {"1", "2"}
    assert "PROMOTED" in rollout_states(server.url)


def test_an_aborted_canary_drains_its_sequences_on_the_candidate(server_factory, tmp_path):
    yaml = (
        f"sequence:\n{STATE}  swap: drain\n"
        f"rollout: {{mode: canary, steps: [50, 100], interval: 60s, gates: {RELAXED_GATES}}}\n"
    )
    model_dir, server = start(server_factory, tmp_path / "repo", yaml)
    write_sequence_version(model_dir, 2)
    wait_for(
        lambda: httpx.get(f"{server.url}/admin/models/acc/rollout").json()["rollout"],
        timeout=30,
        what="the canary",
    )

    aborted: list[httpx.Response] = []
    abort = lambda: aborted.append(httpx.post(f"{server.url}/admin/models/acc/rollout/abort"))  # noqa: E731
    run = run_while(server.url, 4.0, 1.5, abort)
    assert aborted[0].status_code == 200, aborted[0].text
    assert_whole(run)
    assert run.versions == {"1", "2"}
    assert "ABORTED" in rollout_states(server.url)
    retired = wait_for(lambda: [e for e in unloaded(server.url) if e["version"] == 2], timeout=30)
    assert retired[0]["data"]["sequences"] > 0 and retired[0]["data"]["sequences_cut"] == 0


def step(
    url: str, sequence_id: int, x: float, version: str | None = None, **flags
) -> httpx.Response:
    path = f"/v2/models/acc/versions/{version}/infer" if version else "/v2/models/acc/infer"
    body = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [x]}],
        "parameters": {
            "sequence_id": sequence_id,
            **{f"sequence_{k}": v for k, v in flags.items()},
        },
    }
    return httpx.post(url + path, json=body)


def test_a_sequence_finishes_on_its_draining_version_even_when_it_names_it_or_the_model_goes(
    server_factory, tmp_path
):
    model_dir, server = start(server_factory, tmp_path / "repo", f"sequence:\n{STATE}")
    assert step(server.url, 1, 2.0, "1", start=True).json()["outputs"][0]["data"] == [2.0]
    assert step(server.url, 2, 3.0, start=True).status_code == 200
    write_sequence_version(model_dir, 2)
    wait_for(lambda: step(server.url, 99, 1.0, start=True, end=True).json()["model_version"]
             == "2", timeout=30)  # fmt: skip
    answer = step(server.url, 1, 1.0, "1")  # named version, now draining: still its own
    assert (answer.status_code, answer.json()["model_version"]) == (200, "1"), answer.text
    assert answer.json()["outputs"][0]["data"] == [3.0]
    refused = step(server.url, 1, 1.0, "2")
    assert refused.status_code == 400 and "is on version 1" in refused.text
    model_dir.rename(tmp_path / "gone")  # the model is withdrawn from the repository
    plain = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]}
    wait_for(lambda: httpx.post(f"{server.url}/v2/models/acc/infer", json=plain).status_code
             == 404, timeout=30)  # fmt: skip
    last = step(server.url, 2, 1.0, end=True)  # its sequences still finish where they started
    assert (last.status_code, last.json()["outputs"][0]["data"]) == (200, [4.0]), last.text
    assert step(server.url, 1, 1.0, end=True).json()["outputs"][0]["data"] == [4.0]
