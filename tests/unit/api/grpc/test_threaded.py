"""Inference on a gRPC worker thread: leased and counted like the data plane's, a drain waits
for it, and everything that is not plain goes through the data plane unchanged."""

import asyncio
import threading

import numpy as np
import pytest

from baton.api.dataplane import DataPlane, InferRequest
from baton.api.grpc.threaded import ThreadedInfer
from baton.errors import BatonError, InvalidRequest, NotFound, TooManyRequests
from baton.observe.metrics import Metrics
from baton.settings import RolloutSettings
from tests.unit.control.harness import Harness


def request(value: float = 0.0, width: int = 4) -> InferRequest:
    return InferRequest({"x": np.full((1, width), value, np.float32)}, {"x": "FP32"})


@pytest.fixture
async def h(tmp_path):
    harness = Harness(tmp_path)
    harness.add(1)
    await harness.settle()
    return harness


def threaded(h: Harness, max_inflight: int = 0) -> tuple[ThreadedInfer, DataPlane, Metrics]:
    metrics = Metrics()
    plane = DataPlane(h.manager, metrics, max_inflight=max_inflight)
    infer = ThreadedInfer(plane, h.manager, metrics, asyncio.get_running_loop(), threads=2)
    return infer, plane, metrics


async def test_a_plain_request_is_answered_and_its_lease_given_back(h):
    infer, plane, metrics = threaded(h)
    answer = await asyncio.to_thread(infer.infer, "m", None, request(2.0))
    assert answer.model_version == "1" and float(answer.outputs[0].data[0, 0]) == 3.0
    assert answer.outputs[0].datatype == "FP32"
    handle = h.manager.serving_map.get("m").versions[1]
    assert handle.inflight == 0 and plane.inflight == 0 and handle.served == 1
    assert metrics.requests.labels("m", "1", "ok")._value.get() == 1


async def test_a_plain_request_needs_no_trip_to_the_loop(h):
    infer, _, _ = threaded(h)
    answered = threading.Event()
    caller = threading.Thread(target=lambda: infer.infer("m", None, request()) and answered.set())
    caller.start()
    assert answered.wait(5)  # the loop is blocked right here, and the call was answered
    caller.join(5)


async def test_refusals_are_the_data_planes(h):
    infer, _, _ = threaded(h)
    with pytest.raises(NotFound, match="unknown model 'nope'"):
        await asyncio.to_thread(infer.infer, "nope", None, request())
    with pytest.raises(NotFound, match="version 9"):
        await asyncio.to_thread(infer.infer, "m", "9", request())
    with pytest.raises(InvalidRequest):
        await asyncio.to_thread(infer.infer, "m", None, request(width=3))
    limited, plane, _ = threaded(h, max_inflight=1)
    plane.inflight = 1  # a request on the loop holds the only place
    with pytest.raises(TooManyRequests, match="--max-inflight 1"):
        await asyncio.to_thread(limited.infer, "m", None, request())


async def test_a_failing_prediction_is_an_error_counted_against_its_version(tmp_path):
    h = Harness(tmp_path)
    h.add(1, fail_predict=lambda x: bool((x > 100).any()))
    await h.settle()
    infer, plane, metrics = threaded(h)
    with pytest.raises(BatonError) as failed:
        await asyncio.to_thread(infer.infer, "m", None, request(500.0))
    assert failed.value.http_status == 500 and "request" in str(failed.value)
    assert plane.inflight == 0 and h.manager.serving_map.get("m").versions[1].inflight == 0
    assert metrics.requests.labels("m", "1", "error")._value.get() == 1


async def test_a_canary_goes_through_the_data_plane(h):
    h.offer(rollout=RolloutSettings(mode="canary", steps=(50, 100), interval=30))
    h.add(2)
    await h.settle()
    infer, _, _ = threaded(h)
    answers = [await asyncio.to_thread(infer.infer, "m", None, request()) for _ in range(40)]
    assert {a.model_version for a in answers} == {"1", "2"}
    windows = {v: r.handle.window.stats() for v, r in h.manager.model("m").versions.items()}
    assert windows[1].requests + windows[2].requests == 40  # the rollout saw every one


async def test_a_drain_waits_for_a_request_predicting_on_a_thread(tmp_path):
    h = Harness(tmp_path)
    h.add(1, predict_seconds=0.5)
    await h.settle()
    infer, _, _ = threaded(h)
    old = h.runtimes[1]
    call = asyncio.create_task(asyncio.to_thread(infer.infer, "m", None, request()))
    while old.calls == 0:
        await asyncio.sleep(0.01)
    h.add(2)  # version 2 takes over while version 1 is predicting
    settled = asyncio.create_task(h.settle())
    answer = await call
    assert answer.model_version == "1" and not old.unloaded
    await settled
    assert h.default() == 2 and old.unloaded  # unloaded once the request gave its lease back
