import asyncio
import threading

import numpy as np
import pytest

from baton.runtimes.fake import FakeRuntime
from baton.serving.handle import HandleClosed, VersionHandle


def make(predict_seconds=0.0):
    rt = FakeRuntime(1.0, predict_seconds=predict_seconds)
    rt.load()
    return VersionHandle("m", 1, rt, rt.signature())


async def test_lease_counts_in_flight():
    h = make()
    assert h.inflight == 0
    with h.lease():
        assert h.inflight == 1
        with h.lease():
            assert h.inflight == 2
    assert h.inflight == 0


async def test_lease_released_on_error():
    h = make()
    with pytest.raises(RuntimeError), h.lease():
        raise RuntimeError("boom")
    assert h.inflight == 0


async def test_drained_waits_for_in_flight_requests():
    h = make(predict_seconds=0.2)

    async def request():
        with h.lease():
            return await h.predict({"x": np.zeros((1, 4), np.float32)})

    task = asyncio.create_task(request())
    await asyncio.sleep(0.05)
    assert h.inflight == 1
    h.close()
    assert await h.drained(timeout=5.0) is True
    assert task.done() and h.inflight == 0
    np.testing.assert_array_equal((await task)["y"], np.ones((1, 4), np.float32))


async def test_drained_reports_timeout():
    h = make(predict_seconds=0.5)

    async def request():
        with h.lease():
            await h.predict({"x": np.zeros((1, 4), np.float32)})

    task = asyncio.create_task(request())
    await asyncio.sleep(0.05)
    assert await h.drained(timeout=0.05) is False
    await task


async def test_closed_handle_refuses_new_leases_but_not_running_ones():
    h = make()
    with h.lease():
        h.close()
        assert h.inflight == 1
        with pytest.raises(HandleClosed):
            h.acquire()
    assert h.inflight == 0
    assert await h.drained(timeout=0.01) is True


async def test_leases_from_many_threads_add_up_and_a_drain_waits_for_them():
    h = make()
    started, go = threading.Barrier(9), threading.Event()

    def worker() -> None:
        for _ in range(2000):
            with h.lease():
                pass
        with h.lease():  # one held until the drain has begun
            started.wait(10)
            go.wait(10)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    await asyncio.to_thread(started.wait, 10)
    assert h.inflight == 8
    h.close()
    drained = asyncio.create_task(h.drained(timeout=5.0))
    await asyncio.sleep(0.05)
    assert not drained.done()  # still waiting for the threads' leases
    go.set()
    assert await drained is True
    for t in threads:
        t.join(10)
    assert h.inflight == 0 and h.served == 8 * 2001
