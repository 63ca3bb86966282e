import numpy as np
import pytest

from baton.rollout.window import VersionWindow


def test_window_summarises_requests_latency_and_outputs():
    w = VersionWindow()
    for i in range(100):
        w.record(0.001 * (i + 1), {"y": np.full((1, 4), 2.0, np.float32)})
    w.record_error()
    s = w.stats()
    assert (s.requests, s.errors) == (101, 1)
    assert s.p99 == pytest.approx(0.09901, rel=1e-3)
    assert s.outputs.mean == pytest.approx(2.0) and s.outputs.std == pytest.approx(0.0)
    assert s.outputs.classes == {0: 100}  # equal scores: the first column wins
    w.reset()
    assert w.stats().requests == 0 and w.stats().p99 is None and w.stats().outputs is None


def test_class_histogram_for_score_outputs():
    w = VersionWindow()
    w.record(0.001, {"scores": np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], np.float32)})
    assert w.stats().outputs.classes == {0: 1, 1: 2}


def test_non_numeric_outputs_only_count_requests():
    w = VersionWindow()
    w.record(0.001, {"s": np.array([b"a"], dtype=object)})
    s = w.stats()
    assert s.requests == 1 and s.outputs is None
