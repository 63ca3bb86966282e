"""The shadow runner: answer comparison, sampling, and where copies run (loop or thread)."""

import asyncio
import threading
import time

import numpy as np
import pytest

from baton.rollout.window import VersionWindow
from baton.runtimes.fake import FakeRuntime
from baton.serving.handle import VersionHandle
from baton.serving.shadow import ShadowRunner, compare

F = np.float32
INF, NAN = np.inf, np.nan


@pytest.mark.parametrize(
    ("expected", "actual", "agreed", "worst"),
    [
        ([1.0, 2.0], [1.0, 2.0], True, 0.0),
        ([1.0, 2.0], [1.0, 2.0 + 1e-6], True, pytest.approx(1e-6, rel=0.1)),
        ([1.0, 2.0], [1.0, 2.5], False, 0.5),
        ([1000.0], [1000.05], True, pytest.approx(0.05, rel=1e-3)),  # within rtol 1e-4
        ([INF, 1.0], [INF, 1.0], True, 0.0),  # equal infinities agree
        ([INF], [-INF], False, INF),
        ([NAN], [NAN], False, 0.0),  # like np.allclose: NaN never agrees
        ([], [], True, 0.0),
    ],
)
def test_compare_floats(expected, actual, agreed, worst):
    got = compare({"y": np.array(expected, F)}, {"y": np.array(actual, F)}, 1e-5, 1e-4)
    assert got == (agreed, worst)


def test_compare_integers_exactly_and_shapes_strictly():
    ints = {"c": np.array([1, 2], np.int64)}
    assert compare(ints, {"c": np.array([1, 2], np.int64)}, 1, 1) == (True, 0.0)
    assert compare(ints, {"c": np.array([1, 3], np.int64)}, 1, 1)[0] is False
    assert compare(ints, {"c": np.array([[1, 2]], np.int64)}, 1, 1) == (False, INF)
    assert compare(ints, {}, 1, 1) == (False, INF)


class Recording(FakeRuntime):
    """Records which thread each prediction ran on; can burn CPU for ``burn`` seconds."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.threads: list[str] = []
        self.burn = 0.0

    def predict(self, inputs, outputs=None):
        self.threads.append(threading.current_thread().name)
        until = time.thread_time() + self.burn
        while time.thread_time() < until:
            pass
        return super().predict(inputs, outputs)


def handles(**candidate):
    stable_rt, candidate_rt = FakeRuntime(1.0), Recording(offset=1.0, **candidate)
    stable_rt.load()
    candidate_rt.load()
    stable = VersionHandle("m", 1, stable_rt, stable_rt.signature())
    cand = VersionHandle("m", 2, candidate_rt, candidate_rt.signature())
    cand.window = VersionWindow()
    return stable, cand, candidate_rt


async def offer_one(runner, stable, cand, value=0.0):
    x = {"x": np.full((1, 4), value, F)}
    answer = stable.runtime.predict(x, None)
    started = runner.offer(cand, x, None, answer, stable)
    await runner.drain()
    return started


async def test_cheap_copies_move_from_the_thread_to_the_loop():
    runner = ShadowRunner(inline_below=0.005)  # a generous limit: this is not a speed test
    stable, cand, rt = handles()
    for _ in range(12):
        assert await offer_one(runner, stable, cand)
    main = threading.current_thread().name
    assert rt.threads[0].startswith("baton-shadow")  # cost unknown yet: on the thread
    assert rt.threads[-4:] == [main] * 4  # once a copy is known to cost less than the limit
    stats = cand.window.stats()
    assert stats.compared == stats.agreed == 12 and cand.inflight == 0
    runner.shutdown()


async def test_dear_copies_stay_on_the_thread():
    runner = ShadowRunner(inline_below=0.001)
    stable, cand, rt = handles(predict_seconds=0.02)  # far beyond the limit, even idle
    for _ in range(3):
        await offer_one(runner, stable, cand)
    assert all(t.startswith("baton-shadow") for t in rt.threads) and len(rt.threads) == 3
    assert cand.window.shadow_cost >= 0.02
    runner.shutdown()


async def test_a_copy_found_dear_on_the_loop_sends_the_window_back_to_the_thread_for_good():
    runner = ShadowRunner(inline_below=0.001)
    stable, cand, rt = handles()
    cand.predict_seconds = 20e-6
    await offer_one(runner, stable, cand)
    rt.burn = 0.003  # the model turns dear: 3 ms of CPU per prediction
    for _ in range(6):
        await offer_one(runner, stable, cand)
    main = threading.current_thread().name
    inline = [t == main for t in rt.threads]
    assert inline[:2] == [True, True] and inline[-2:] == [False, False]
    assert 2 <= sum(inline) <= 4  # the moving average sends it back within a few copies
    assert cand.window.shadow_thread_only
    runner.shutdown()


async def test_copies_that_wait_on_a_device_or_take_long_stay_on_the_thread():
    runner = ShadowRunner(inline_below=0.001)
    stable, cand, rt = handles(predict_seconds=0.001)  # sleeps: little CPU
    cand.predict_seconds = 20e-6
    rt.computes_on_cpu = False  # e.g. a GPU runtime
    await offer_one(runner, stable, cand)
    assert rt.threads[0].startswith("baton-shadow")
    runner.shutdown()


async def test_inline_copy_is_dropped_if_a_caller_arrived_meanwhile():
    runner = ShadowRunner(inline_below=0.005)
    stable, cand, rt = handles()
    await offer_one(runner, stable, cand)  # learns the cost
    assert cand.window.shadow_cost < 0.005
    x = {"x": np.zeros((1, 4), F)}
    assert runner.offer(cand, x, None, stable.runtime.predict(x, None), stable)
    stable.acquire()  # a caller comes in before the loop gets to the copy
    await asyncio.sleep(0)
    await runner.drain()
    stable.release()
    assert len(rt.threads) == 1 and cand.window.shadow_skipped == 1 and cand.inflight == 0
    runner.shutdown()


async def test_offers_while_callers_are_in_flight_or_outside_the_fraction_are_not_copied():
    runner = ShadowRunner()
    stable, cand, _ = handles()
    x = {"x": np.zeros((1, 4), F)}
    answer = stable.runtime.predict(x, None)
    with stable.lease():
        assert not runner.offer(cand, x, None, answer, stable)
    assert cand.window.shadow_skipped == 1
    taken = [runner.offer(cand, x, None, answer, stable, fraction=0.25) for _ in range(8)]
    await runner.drain()
    assert sum(taken) <= 2 and taken[3]  # every fourth offer is in the mirrored share
    runner.shutdown()


async def test_a_candidate_known_cheap_from_warm_up_runs_on_the_loop_from_the_first_copy():
    runner = ShadowRunner(inline_below=0.005)
    stable, cand, rt = handles()
    cand.predict_seconds = 20e-6  # as the loader measured it at warm-up
    await offer_one(runner, stable, cand)
    assert rt.threads == [threading.current_thread().name]
    runner.shutdown()
