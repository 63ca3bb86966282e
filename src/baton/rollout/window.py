"""Live statistics of one version while a rollout runs, fed by the data plane per request and
read by the rollout controller as :class:`baton.rollout.gates.WindowStats`.

Kept on the event-loop thread only (no locks). The latency p99 comes from the most recent
``LATENCY_SAMPLES`` requests; the output summary from the first output of each answer: mean and
standard deviation of its values and, for a 2-D float output with several columns (a
classifier's scores), how often each column was the largest (the predicted class).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from baton.rollout.gates import OutputSummary, WindowStats

__all__ = ["LATENCY_SAMPLES", "VersionWindow"]

LATENCY_SAMPLES = 4096


class VersionWindow:
    __slots__ = ("_classes", "_latencies", "_n", "_sum", "_sumsq", "errors", "requests")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.errors = 0
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._n = 0
        self._sum = 0.0
        self._sumsq = 0.0
        self._classes: dict[int, int] = {}

    def record_error(self) -> None:
        self.requests += 1
        self.errors += 1

    def record(self, seconds: float, outputs: dict[str, np.ndarray]) -> None:
        self.requests += 1
        self._latencies.append(seconds)
        first = next(iter(outputs.values()), None)
        if first is None or first.dtype.kind not in "biuf" or not first.size:
            return
        values = first.astype(np.float64, copy=False)
        self._n += values.size
        self._sum += float(values.sum())
        self._sumsq += float(np.square(values).sum())
        if first.ndim == 2 and first.shape[1] > 1 and first.dtype.kind == "f":
            for cls, count in enumerate(np.bincount(first.argmax(axis=1))):
                if count:
                    self._classes[cls] = self._classes.get(cls, 0) + int(count)

    def stats(self) -> WindowStats:
        p99 = float(np.percentile(self._latencies, 99)) if self._latencies else None
        outputs = None
        if self._n:
            mean = self._sum / self._n
            std = math.sqrt(max(self._sumsq / self._n - mean * mean, 0.0))
            outputs = OutputSummary(mean, std, dict(self._classes) or None)
        return WindowStats(self.requests, self.errors, p99, outputs)
