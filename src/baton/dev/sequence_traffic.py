"""Closed-loop sequence traffic with ground truth, for the tests and ``bench/sequences.py``.

Each of ``concurrency`` clients runs sequences of ``steps`` requests back to back against a
model made of :func:`baton.dev.demo.running_sum_model` versions whose ``constant`` is the
version number (:func:`write_sequence_version`). Every answer is checked against the ground
truth of its sequence for the swap mode's promise:

- ``drain``: every step of a sequence is answered by the version that answered its START, and
  ``y = version * (x1 + ... + xn)``;
- ``migrate``: a sequence may move to another version between two steps; its state is carried
  over (through :data:`HOOK` when the versions ship it: ``state + 1000 * (to - from)``, the same
  whether a sequence moved once or through versions it never sent a request to), and each step
  adds ``x * version`` to it.

A sequence with any answer that breaks its promise is *broken*; a request that fails is
*failed* (it breaks its sequence too, which is then abandoned).

    run = asyncio.run(drive(url, "acc", concurrency=200, steps=50, duration=60, mode="drain"))
    assert run.broken == 0 and run.failed == 0
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import onnx

from baton.dev.demo import running_sum_model

__all__ = [
    "HOOK",
    "SequenceRun",
    "answer_matches",
    "drive",
    "expected_state",
    "write_sequence_version",
]

#: A migration hook (a version's ``migrate.py``): the carried state gains 1000 per version it
#: moves up, so a test can tell a hook-migrated sequence from one carried by name.
HOOK = """
def migrate(state, from_version, to_version):
    return {"h_in": state["h_in"] + 1000.0 * (to_version - from_version)}
"""
HOOK_STEP = 1000.0


def expected_state(
    total: float, previous: int | None, version: int, x: float, mode: str, hook: bool
) -> float | None:
    """A sequence's state after a step adding ``x`` that ``version`` answered, from ``total``
    after the previous step (answered by ``previous``; None before the first); None when that
    version breaks ``mode``'s promise (``drain``: a sequence never moves)."""
    if previous is not None and version != previous:
        if mode == "drain":
            return None
        if hook:
            total += HOOK_STEP * (version - previous)
    return total + x * version


def answer_matches(y: float, expected: float) -> bool:
    """Is the answer ``y`` the ``expected`` state, to float32's precision?"""
    return abs(y - expected) <= 1e-4 * max(1.0, abs(expected))


def write_sequence_version(model_dir: Path, version: int, *, hook: bool = False) -> Path:
    """Publish ``model_dir/<version>`` (constant = version, 64 state floats) atomically, with
    :data:`HOOK` as ``migrate.py`` when ``hook``."""
    staging = model_dir / f".{version}.tmp"
    staging.mkdir(parents=True, exist_ok=True)
    onnx.save(running_sum_model(float(version)), str(staging / "model.onnx"))
    if hook:
        (staging / "migrate.py").write_text(HOOK)
    final = model_dir / str(version)
    os.replace(staging, final)
    return final


@dataclass
class SequenceRun:
    sequences: int = 0  # completed or broken
    requests: int = 0
    failed: int = 0
    broken: int = 0
    moved: int = 0  # sequences that changed version (migrate mode)
    versions: set[str] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    problems: list[str] = field(default_factory=list)  # the first few, for messages
    seconds: float = 0.0

    def note(self, problem: str) -> None:
        if len(self.problems) < 10:
            self.problems.append(problem)


async def drive(
    url: str,
    model: str,
    *,
    concurrency: int,
    steps: int,
    duration: float,
    mode: str = "drain",
    hook: bool = False,
    seed: int = 0,
) -> SequenceRun:
    """Run closed-loop sequences for ``duration`` seconds (each client finishes the sequence
    it is in); see the module docstring."""
    run = SequenceRun()
    ids = itertools.count(seed * 10_000_000 + 1)
    deadline = time.monotonic() + duration
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one_client(number: int) -> None:
            rng = random.Random(seed * 1000 + number)
            while time.monotonic() < deadline:
                await _sequence(client, model, next(ids), steps, mode, hook, rng, run)

        await asyncio.gather(*(one_client(i) for i in range(concurrency)))
    run.seconds = time.perf_counter() - started
    return run


async def _sequence(
    client: httpx.AsyncClient,
    model: str,
    sequence_id: int,
    steps: int,
    mode: str,
    hook: bool,
    rng: random.Random,
    run: SequenceRun,
) -> None:
    total = 0.0  # the state's value (every one of its floats)
    previous: int | None = None
    for step in range(steps):
        x = float(rng.randint(1, 9))
        parameters: dict = {"sequence_id": sequence_id}
        if step == 0:
            parameters["sequence_start"] = True
        if step == steps - 1:
            parameters["sequence_end"] = True
        body = {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [x]}],
            "parameters": parameters,
        }
        sent = time.perf_counter()
        try:
            response = await client.post(f"/v2/models/{model}/infer", json=body)
        except httpx.HTTPError as exc:
            response, error = None, f"{type(exc).__name__}: {exc}"
        run.requests += 1
        if response is None or response.status_code != 200:
            error = error if response is None else f"{response.status_code} {response.text}"
            run.failed += 1
            run.broken += 1
            run.sequences += 1
            run.note(f"sequence {sequence_id} step {step}: {error}")
            return
        run.latencies.append(time.perf_counter() - sent)
        doc = response.json()
        version = int(doc["model_version"])
        run.versions.add(str(version))
        expected = expected_state(total, previous, version, x, mode, hook)
        if expected is None:
            run.broken += 1
            run.sequences += 1
            run.note(f"sequence {sequence_id} moved {previous} -> {version} in drain mode")
            return
        run.moved += previous is not None and version != previous
        previous, total = version, expected
        y = doc["outputs"][0]["data"][0]
        if not answer_matches(y, total):
            run.broken += 1
            run.sequences += 1
            run.note(f"sequence {sequence_id} step {step} on v{version}: y={y}, expected {total}")
            return
    run.sequences += 1
