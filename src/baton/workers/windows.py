"""A rollout's live statistics, gathered in the workers and judged in the supervisor.

In a worker, a version whose statistics a rollout collects gets a :class:`ForwardingWindow`:
the data plane and the shadow runner record into it as into any
:class:`~baton.rollout.window.VersionWindow`, but what they record is kept as raw samples and
taken away by :meth:`ForwardingWindow.take` (every :data:`FLUSH_SECONDS`) to be sent to the
supervisor, which adds them to the window its gates read (:func:`add_samples`). So the gates
see every worker's requests, as they would with one process.
"""

from __future__ import annotations

import threading

import numpy as np

from baton.rollout.window import VersionWindow, summarize

__all__ = ["FLUSH_SECONDS", "ForwardingWindow", "Samples", "add_samples"]

FLUSH_SECONDS = 0.1

#: (latency samples [(seconds, summary)], errors, shadow results [post_shadow's arguments])
Samples = tuple[list[tuple[float, tuple | None]], int, list[tuple]]


class ForwardingWindow(VersionWindow):
    __slots__ = ("_lock", "_out_errors", "_out_samples", "_out_shadow")

    def reset(self) -> None:
        super().reset()
        self._lock = threading.Lock()
        self._out_samples: list[tuple[float, tuple | None]] = []
        self._out_errors = 0
        self._out_shadow: list[tuple] = []

    def record(self, seconds: float, outputs: dict[str, np.ndarray]) -> None:
        self._out_samples.append((seconds, summarize(outputs)))

    def record_error(self) -> None:
        self._out_errors += 1

    def post_shadow(
        self, ok: bool, seconds: float, summary: tuple | None, agreed: bool, diff: float
    ) -> None:
        with self._lock:  # the shadow thread posts; the event loop takes
            self._out_shadow.append((ok, seconds, summary, agreed, diff))

    def take(self) -> Samples | None:
        """What was recorded since the last call (``None`` if nothing). Event-loop thread."""
        if not (self._out_samples or self._out_errors or self._out_shadow):
            return None
        with self._lock:
            shadow, self._out_shadow = self._out_shadow, []
        samples, self._out_samples = self._out_samples, []
        errors, self._out_errors = self._out_errors, 0
        return samples, errors, shadow


def add_samples(window: VersionWindow, samples: Samples) -> None:
    """Fold one worker's samples into the supervisor's window."""
    latencies, errors, shadow = samples
    for seconds, summary in latencies:
        window.add(seconds, summary)
    for _ in range(errors):
        window.record_error()
    for result in shadow:
        window.post_shadow(*result)
