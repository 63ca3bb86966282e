"""Live statistics of one version while a rollout runs, fed by the data plane per request and
read by the manager's gate checks as :class:`baton.rollout.gates.WindowStats`.

Kept on the event-loop thread (no locks), except :meth:`VersionWindow.post_shadow`, which the
shadow thread calls; its results are folded in when the window is next read. The latency p99
comes from the most recent ``LATENCY_SAMPLES`` requests; the output summary from the first
output of each answer: mean and standard deviation of its values and, for a 2-D float output
with several columns (a classifier's scores), how often each column was the largest (the
predicted class).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from baton.rollout.gates import OutputSummary, WindowStats

__all__ = ["LATENCY_SAMPLES", "VersionWindow", "summarize"]

LATENCY_SAMPLES = 4096
SMALL = 64  # outputs up to this many values are summarised without numpy


def summarize(outputs: dict[str, np.ndarray]) -> tuple | None:
    """(value count, sum, sum of squares, {class: count}) of the first output, or ``None``.

    Called per request during a rollout, so it avoids numpy's per-call overhead where it can:
    small outputs are summed as Python floats, a single row's class needs no bincount."""
    first = next(iter(outputs.values()), None)
    if first is None or first.dtype.kind not in "biuf" or not first.size:
        return None
    flat = first.reshape(-1)
    if flat.size <= SMALL:
        values = flat.tolist()
        total, squares = float(sum(values)), float(sum(v * v for v in values))
    else:
        values = flat.astype(np.float64, copy=False)
        total, squares = float(values.sum()), float(np.dot(values, values))
    classes: dict[int, int] = {}
    if first.ndim == 2 and first.shape[1] > 1 and first.dtype.kind == "f":
        winners = first.argmax(axis=1)
        if winners.size == 1:
            classes = {int(winners[0]): 1}
        else:
            counts = np.bincount(winners)
            present = np.flatnonzero(counts)
            classes = dict(zip(present.tolist(), counts[present].tolist(), strict=True))
    return flat.size, total, squares, classes


class VersionWindow:
    __slots__ = (
        "_classes",
        "_latencies",
        "_n",
        "_pending",
        "_sum",
        "_sumsq",
        "agreed",
        "compared",
        "errors",
        "max_abs_diff",
        "requests",
        "shadow_cost",
        "shadow_skipped",
        "shadow_thread_only",
    )

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
        self.compared = 0
        self.agreed = 0
        self.max_abs_diff = 0.0
        self.shadow_skipped = 0
        self.shadow_cost: float | None = None  # seconds per shadow copy (moving average)
        self.shadow_thread_only = False  # copies proved too dear to run on the event loop
        self._pending: deque[tuple] = deque()  # shadow results from the shadow thread

    def record_error(self) -> None:
        self.requests += 1
        self.errors += 1

    def record(self, seconds: float, outputs: dict[str, np.ndarray]) -> None:
        self.add(seconds, summarize(outputs))

    def add(self, seconds: float, summary: tuple | None) -> None:
        """One answered request: its latency and :func:`summarize` of its outputs."""
        self.requests += 1
        self._latencies.append(seconds)
        if summary is None:
            return
        n, total, squares, classes = summary
        self._n += n
        self._sum += total
        self._sumsq += squares
        for cls, count in classes.items():
            self._classes[cls] = self._classes.get(cls, 0) + count

    def post_shadow(
        self, ok: bool, seconds: float, summary: tuple | None, agreed: bool, diff: float
    ) -> None:
        """Queue a shadow result; safe from any thread (folded in when the window is read)."""
        self._pending.append((ok, seconds, summary, agreed, diff))

    def _fold_pending(self) -> None:
        while self._pending:
            ok, seconds, summary, agreed, diff = self._pending.popleft()
            if not ok:
                self.record_error()
                continue
            self.add(seconds, summary)
            self.record_comparison(agreed, diff)

    def record_comparison(self, agreed: bool, max_abs_diff: float) -> None:
        """A shadow answer compared with the stable version's answer to the same request."""
        self.compared += 1
        self.agreed += agreed
        self.max_abs_diff = max(self.max_abs_diff, max_abs_diff)

    def stats(self) -> WindowStats:
        self._fold_pending()
        p99 = float(np.percentile(self._latencies, 99)) if self._latencies else None
        outputs = None
        if self._n:
            mean = self._sum / self._n
            std = math.sqrt(max(self._sumsq / self._n - mean * mean, 0.0))
            outputs = OutputSummary(mean, std, dict(self._classes) or None, self._n)
        return WindowStats(
            self.requests, self.errors, p99, outputs, self.compared, self.agreed, self.max_abs_diff
        )
