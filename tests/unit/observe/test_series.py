"""Per-second traffic series sampled from the metrics: deltas, quantiles, the window."""

from __future__ import annotations

from baton.observe.metrics import Metrics
from baton.observe.series import Point, TrafficSeries


def serve(metrics: Metrics, version: int, ok: int, failed: int, seconds: float) -> None:
    good, bad, latency, _ = metrics.request_children("m", version)
    for _ in range(ok):
        good.inc()
        latency.observe(seconds)
    for _ in range(failed):
        bad.inc()


def test_each_sample_is_the_traffic_since_the_previous_one():
    metrics = Metrics()
    series = TrafficSeries(metrics, window=300)
    serve(metrics, 1, ok=10, failed=2, seconds=0.002)
    first = series.sample(100.0)[("m", "1")]
    assert (first.requests, first.errors) == (12, 2)
    assert 0.001 < first.p50 <= 0.0025 and 0.001 < first.p99 <= 0.0025
    serve(metrics, 1, ok=4, failed=0, seconds=0.2)
    serve(metrics, 2, ok=6, failed=0, seconds=0.0002)
    latest = series.sample(101.0)
    assert (latest[("m", "1")].requests, latest[("m", "1")].errors) == (4, 0)
    assert 0.1 < latest[("m", "1")].p50 <= 0.25  # only this second's latencies
    assert latest[("m", "2")].requests == 6
    quiet = series.sample(102.0)[("m", "1")]
    assert (quiet.requests, quiet.p50, quiet.p99) == (0, None, None)
    assert [p.t for p in series.history()[("m", "1")]] == [100.0, 101.0, 102.0]


def test_points_older_than_the_window_are_dropped():
    metrics = Metrics()
    series = TrafficSeries(metrics, window=2)
    serve(metrics, 1, ok=1, failed=0, seconds=0.001)
    for t in (10.0, 11.0, 12.0, 13.0):
        series.sample(t)
    assert [p.t for p in series.history()[("m", "1")]] == [11.0, 12.0, 13.0]
    assert Point(1.5, 3, 1, 0.001, None).to_json() == [1.5, 3, 1, 0.001, None]
