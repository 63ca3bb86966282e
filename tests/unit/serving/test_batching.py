"""The dynamic batcher against a FakeRuntime (y = x + offset) that records every call."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from baton.errors import BatonError
from baton.runtimes.fake import FakeRuntime
from baton.serving.batching import Batcher


class Recorder:
    def __init__(self, offset=1.0, predict_seconds=0.0, fail=False):
        self.runtime = FakeRuntime(offset, predict_seconds=predict_seconds)
        self.runtime.load()
        self.batches: list[int] = []
        self.fail = fail

    def predict(self, inputs, outputs):
        self.batches.append(next(iter(inputs.values())).shape[0])
        if self.fail:
            raise RuntimeError("backend exploded")
        return self.runtime.predict(inputs, outputs)


@pytest.fixture
def executor():
    with ThreadPoolExecutor(2) as pool:
        yield pool


def make(recorder, executor, **kwargs):
    options = {"max_batch_size": 32, "max_delay": 0.02} | kwargs
    return Batcher(recorder.predict, executor, **options)


def rows(n: int, start: float) -> np.ndarray:
    return np.arange(n * 4, dtype=np.float32).reshape(n, 4) + start


async def test_concurrent_requests_share_a_call_and_get_their_own_rows(executor):
    rec = Recorder()
    batcher = make(rec, executor)
    requests = [rows(1 + i % 3, start=100.0 * i) for i in range(20)]
    results = await asyncio.gather(*(batcher.submit({"x": x}, None) for x in requests))
    for x, out in zip(requests, results, strict=True):
        np.testing.assert_array_equal(out["y"], x + 1)
    assert sum(rec.batches) == sum(x.shape[0] for x in requests)
    assert len(rec.batches) < len(requests)  # requests were really combined
    assert max(rec.batches) <= 32


async def test_no_request_waits_longer_than_the_delay(executor):
    rec = Recorder()
    batcher = make(rec, executor, max_delay=0.05)
    started = time.perf_counter()
    out = await batcher.submit({"x": rows(1, 0)}, None)
    waited = time.perf_counter() - started
    np.testing.assert_array_equal(out["y"], rows(1, 0) + 1)
    assert 0.045 <= waited < 0.05 + 0.1  # waited for company, but not past the delay (+ slack)


async def test_full_batch_goes_at_once_without_waiting(executor):
    rec = Recorder()
    batcher = make(rec, executor, max_batch_size=8, max_delay=5.0)
    started = time.perf_counter()
    await asyncio.gather(*(batcher.submit({"x": rows(1, i)}, None) for i in range(8)))
    assert time.perf_counter() - started < 1.0
    assert rec.batches == [8]


async def test_preferred_size_dispatches_early(executor):
    rec = Recorder()
    batcher = make(rec, executor, max_batch_size=32, max_delay=5.0, preferred_batch_sizes=(4,))
    started = time.perf_counter()
    await asyncio.gather(*(batcher.submit({"x": rows(1, i)}, None) for i in range(4)))
    assert time.perf_counter() - started < 1.0 and rec.batches == [4]


async def test_overflow_is_split_into_several_batches(executor):
    rec = Recorder()
    batcher = make(rec, executor, max_batch_size=4, max_delay=0.01)
    results = await asyncio.gather(*(batcher.submit({"x": rows(3, i)}, None) for i in range(3)))
    assert sorted(rec.batches) == [3, 3, 3]  # 3 + 3 > 4: never over the maximum
    assert [r["y"].shape for r in results] == [(3, 4)] * 3


async def test_requests_larger_than_the_maximum_run_alone(executor):
    rec = Recorder()
    batcher = make(rec, executor, max_batch_size=4)
    out = await batcher.submit({"x": rows(10, 0)}, None)
    assert rec.batches == [10] and out["y"].shape == (10, 4)


async def test_different_shapes_are_not_mixed(executor):
    rec = Recorder()
    batcher = make(rec, executor)
    wide = np.zeros((1, 8), np.float32)
    a, b = await asyncio.gather(
        batcher.submit({"x": rows(1, 0)}, None), batcher.submit({"x": wide}, None)
    )
    assert a["y"].shape == (1, 4) and b["y"].shape == (1, 8)
    assert sorted(rec.batches) == [1, 1]


async def test_an_error_fails_every_request_of_its_batch(executor):
    rec = Recorder(fail=True)
    batcher = make(rec, executor)
    results = await asyncio.gather(
        *(batcher.submit({"x": rows(1, i)}, None) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_outputs_without_batch_dimension_cannot_be_split(executor):
    def scalar(inputs, outputs):
        return {"y": np.float32(1.0) * np.ones(())}

    batcher = Batcher(scalar, executor, max_batch_size=8, max_delay=0.01)
    results = await asyncio.gather(
        *(batcher.submit({"x": rows(1, i)}, None) for i in range(2)), return_exceptions=True
    )
    assert all(isinstance(r, BatonError) and "batch dimension" in str(r) for r in results)
