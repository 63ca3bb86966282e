"""Calls over the pipe between supervisor and worker; rollout samples carried to the supervisor."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import Future

import numpy as np
import pytest

from baton.errors import NotFound, VersionFailed
from baton.rollout.window import VersionWindow
from baton.workers.channel import Channel, WorkerError, WorkerGone
from baton.workers.windows import ForwardingWindow, add_samples


def pair(on_call=None, on_note=None) -> tuple[Channel, Channel]:
    a, b = multiprocessing.Pipe()
    caller, callee = Channel(a, "caller"), Channel(b, "callee", on_call, on_note)
    caller.start()
    callee.start()
    return caller, callee


def test_calls_answer_with_values_futures_and_the_callers_errors():
    def on_call(op, args):
        if op == "add":
            return args["a"] + args["b"]
        if op == "later":
            future: Future = Future()
            threading.Timer(0.05, future.set_result, ["done"]).start()
            return future
        if op == "bad":
            raise VersionFailed("load_error", "no such file")
        if op == "missing":
            raise NotFound("unknown model 'x'")
        raise KeyError(op)

    caller, callee = pair(on_call)
    assert caller.call("add", timeout=5, a=2, b=3) == 5
    assert caller.call("later", timeout=5) == "done"
    with pytest.raises(VersionFailed) as failed:
        caller.call("bad", timeout=5)
    assert failed.value.reason == "load_error" and "no such file" in str(failed.value)
    with pytest.raises(NotFound, match="unknown model"):
        caller.call("missing", timeout=5)
    with pytest.raises(WorkerError, match="KeyError"):
        caller.call("what", timeout=5)
    callee.close()


def test_notes_arrive_in_order_and_a_vanished_side_fails_waiting_calls():
    got: list[int] = []
    done = threading.Event()

    def on_note(op, args):
        got.append(args["n"])
        if args["n"] == 99:
            done.set()

    caller, callee = pair(on_call=lambda op, args: Future(), on_note=on_note)  # never answers
    for n in range(100):
        caller.note("n", n=n)
    assert done.wait(5) and got == list(range(100))
    waiting = caller.submit("forever")
    callee.close()
    with pytest.raises(WorkerGone):
        waiting.result(5)
    assert caller.closed.wait(5)
    with pytest.raises(WorkerGone):
        caller.call("after", timeout=5)


def test_samples_recorded_in_a_worker_add_up_in_the_supervisors_window():
    outputs = {"y": np.array([[0.2, 0.8]], np.float32)}
    direct, forwarded, supervisor = VersionWindow(), ForwardingWindow(), VersionWindow()
    for window in (direct, forwarded):
        window.record(0.01, outputs)
        window.record(0.03, outputs)
        window.record_error()
        window.post_shadow(True, 0.02, None, True, 0.0)
    samples = forwarded.take()
    assert samples is not None and forwarded.take() is None  # taken once
    add_samples(supervisor, samples)
    assert supervisor.stats() == direct.stats()
