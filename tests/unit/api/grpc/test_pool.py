"""The gRPC server's thread pool: few threads running, more only while some wait."""

import threading
import time

import pytest

from baton.api.grpc.pool import CallPool


def test_calls_run_and_their_futures_carry_results_and_errors():
    pool = CallPool(size=2, limit=4)
    assert pool.submit(lambda a, b: a + b, 2, b=3).result(5) == 5
    failed = pool.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failed.result(5)
    pool.shutdown()


def test_calls_queue_behind_the_running_threads():
    pool = CallPool(size=1, limit=4)
    gate = threading.Event()
    first = pool.submit(gate.wait, 5)
    second = pool.submit(lambda: "second")
    time.sleep(0.1)
    assert not second.done()  # one thread may run, and it is busy
    gate.set()
    assert first.result(5) and second.result(5) == "second"
    assert len(pool._threads) == 1
    pool.shutdown()


def test_a_call_that_blocks_lets_another_thread_take_calls_until_it_is_done():
    pool = CallPool(size=1, limit=4)
    gate = threading.Event()

    def waits() -> str:
        with pool.blocking():
            gate.wait(5)
        return "waited"

    first = pool.submit(waits)
    second = pool.submit(lambda: "second")
    assert second.result(5) == "second"  # answered while the first one waits
    assert not first.done()
    gate.set()
    assert first.result(5) == "waited"
    pool.submit(lambda: None).result(5)
    pool.submit(lambda: None).result(5)
    deadline = time.monotonic() + 5
    while len(pool._threads) > 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(pool._threads) <= 1  # the extra thread ended once it was not needed
    pool.shutdown()


def test_the_limit_bounds_threads_even_when_all_of_them_wait():
    pool = CallPool(size=1, limit=2)
    gate = threading.Event()

    def waits() -> None:
        with pool.blocking():
            gate.wait(5)

    waiting = [pool.submit(waits) for _ in range(3)]
    time.sleep(0.2)
    assert len(pool._threads) == 2 and not waiting[2].running()
    gate.set()
    for future in waiting:
        future.result(5)
    pool.shutdown()


def test_shutdown_finishes_queued_calls_or_cancels_them():
    pool = CallPool(size=1, limit=1)
    gate = threading.Event()
    pool.submit(gate.wait, 5)
    queued = pool.submit(lambda: "queued")
    gate.set()
    pool.shutdown(wait=True)
    assert queued.result(0) == "queued"
    assert not pool._threads
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)

    pool = CallPool(size=1, limit=1)
    gate = threading.Event()
    running = pool.submit(gate.wait, 5)
    queued = pool.submit(lambda: "queued")
    deadline = time.monotonic() + 5
    while not running.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    pool.shutdown(wait=False, cancel_futures=True)
    gate.set()
    assert running.result(5) and queued.cancelled()
