"""Per-second traffic of every version, for the last few minutes: what the live dashboard charts.

Sampled from the server's own Prometheus metrics (the request counters and the latency
histogram) once a second, off the request path: each :meth:`TrafficSeries.sample` reads the
cumulative values, keeps the difference from the previous sample as one :class:`Point` per
(model, version), and drops points older than ``window`` seconds. Nothing is added to what a
request does.

    series = TrafficSeries(metrics, window=300)
    points = series.sample(time.time())     # {("m", "2"): Point(t, requests=812, ...)}
    series.history()                        # every point still in the window
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from baton.observe.metrics import Metrics, quantile

__all__ = ["Point", "TrafficSeries"]

Key = tuple[str, str]  # (model, version)


@dataclass(frozen=True, slots=True)
class Point:
    """One second of one version's traffic: answered requests, errors among them, and latency
    quantiles in seconds (``None`` without requests)."""

    t: float
    requests: int
    errors: int
    p50: float | None
    p99: float | None

    def to_json(self) -> list:
        return [round(self.t, 3), self.requests, self.errors, self.p50, self.p99]


@dataclass(slots=True)
class _Totals:
    requests: float = 0.0
    errors: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()


class TrafficSeries:
    """See the module docstring. Call :meth:`sample` from one task, about once a second."""

    def __init__(self, metrics: Metrics, window: float = 300.0) -> None:
        self._metrics = metrics
        self.window = window
        self._last: dict[Key, _Totals] = {}
        self._points: dict[Key, deque[Point]] = {}

    def sample(self, now: float) -> dict[Key, Point]:
        """One point per version that exists in the metrics (a version whose series were
        removed is forgotten once its points age out)."""
        totals = self._totals()
        latest: dict[Key, Point] = {}
        for key, total in totals.items():
            before = self._last.get(key, _Totals())
            previous = dict(before.buckets)
            buckets = [(le, count - previous.get(le, 0.0)) for le, count in total.buckets]
            point = Point(
                now,
                int(total.requests - before.requests),
                int(total.errors - before.errors),
                quantile(0.5, buckets),
                quantile(0.99, buckets),
            )
            self._points.setdefault(key, deque()).append(point)
            latest[key] = point
        self._last = totals
        for key in list(self._points):
            points = self._points[key]
            while points and points[0].t < now - self.window:
                points.popleft()
            if not points:
                del self._points[key]
        return latest

    def history(self) -> dict[Key, list[Point]]:
        return {key: list(points) for key, points in self._points.items()}

    def _totals(self) -> dict[Key, _Totals]:
        totals: dict[Key, _Totals] = {}
        for family in self._metrics.requests.collect():
            for s in family.samples:
                if s.name.endswith("_total"):
                    key = (s.labels["model"], s.labels["version"])
                    entry = totals.setdefault(key, _Totals())
                    entry.requests += s.value
                    if s.labels["outcome"] == "error":
                        entry.errors += s.value
        buckets: dict[Key, list[tuple[float, float]]] = {}
        for family in self._metrics.latency.collect():
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    key = (s.labels["model"], s.labels["version"])
                    buckets.setdefault(key, []).append((float(s.labels["le"]), s.value))
        for key, cumulative in buckets.items():
            totals.setdefault(key, _Totals()).buckets = tuple(sorted(cumulative))
        return totals
