"""Shadow traffic: copies of live requests sent to a candidate whose answers nobody receives.

The data plane offers every unversioned request answered by the stable version during a shadow
step; ``rollout.shadow_fraction`` of them are mirrored (evenly, every n-th request, not by
chance). A copy runs only when no caller is in flight on the stable version and fewer than
``max_in_flight`` copies are running — other offers are dropped and counted in
``shadow_skipped`` — so shadow traffic samples the server's idle moments instead of queueing
with callers. The candidate's answer is compared with the stable one (``atol``/``rtol``, exact
for non-float outputs) and summarised; results land in the candidate's live window, where the
gates read the agreement rate.

Where a copy runs depends on what it costs:

- cheap copies (under ``inline_below`` of CPU time, 250 µs by default) run on the event loop
  *after* the caller's response has been written, and only if still no caller is in flight by
  then. Handing such work to a thread costs more than the work: a wake-up, and the GIL bouncing
  between the shadow thread and the event loop while the next request arrives, which costs
  hundreds of µs of CPU per copy (measured in BENCHMARKS.md);
- dearer copies, and those of runtimes that compute on a device, run on their own thread at
  the lowest CPU priority; the event loop only hands out and takes back the candidate's lease.

The cost is a moving average per window, seeded with the prediction time the loader measured at
warm-up. It is counted in the copying thread's CPU time — wall time would add preemption and
waits for the GIL — except for a copy that takes over ten times the limit in wall time, which
is dear whatever the reason. A window whose copies turn out dear while on the loop sends them to
the thread for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from baton.rollout.window import summarize
from baton.serving.handle import HandleClosed, VersionHandle

__all__ = ["ShadowRunner", "compare"]


def _lowest_priority() -> None:
    """Make the calling thread the kernel's last choice for CPU time (Linux: per-thread nice)."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def compare(
    expected: dict[str, np.ndarray], actual: dict[str, np.ndarray], atol: float, rtol: float
) -> tuple[bool, float]:
    """(do all outputs agree, largest absolute difference of float outputs)."""
    agreed, worst = True, 0.0
    for name, want in expected.items():
        got = actual.get(name)
        if got is None or got.shape != want.shape:
            return False, float("inf")
        if want.dtype.kind == "f" and got.dtype.kind == "f":
            if not want.size:
                continue
            with np.errstate(invalid="ignore"):  # inf - inf
                diff = np.abs(got.astype(np.float64) - want)  # np.allclose's rule, computed once
            worst = max(worst, float(diff.max()))
            close = (diff <= atol + rtol * np.abs(want)) & np.isfinite(diff) | (got == want)
            agreed = agreed and bool(close.all())
        else:
            agreed = agreed and bool(np.array_equal(got, want))
    return agreed, worst


def _known_cost(window, candidate: VersionHandle) -> float | None:
    """What a copy is known to cost: the window's measurements, else the warm-up's."""
    return window.shadow_cost if window.shadow_cost is not None else candidate.predict_seconds


def _cost(previous: float | None, wall: float, cpu: float, limit: float) -> float:
    """The moving average of a copy's cost: its CPU time, or its wall time when that is far
    beyond the limit."""
    sample = wall if wall > 10 * limit else cpu
    return sample if previous is None else 0.8 * previous + 0.2 * sample


class ShadowRunner:
    def __init__(
        self,
        max_in_flight: int = 1,
        atol: float = 1e-5,
        rtol: float = 1e-4,
        inline_below: float = 250e-6,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.atol, self.rtol = atol, rtol
        self.inline_below = inline_below
        self._executor = ThreadPoolExecutor(
            max_in_flight, thread_name_prefix="baton-shadow", initializer=_lowest_priority
        )
        self._in_flight = 0
        self._idle: asyncio.Event | None = None
        self._credit = 0.0

    def offer(
        self,
        candidate: VersionHandle,
        inputs: dict[str, np.ndarray],
        outputs: list[str] | None,
        stable_answer: dict[str, np.ndarray],
        stable: VersionHandle,
        fraction: float = 1.0,
    ) -> bool:
        """Start a copy of a request ``stable`` answered if it is in the sampled ``fraction``
        and no caller is in flight on ``stable``; returns whether it did."""
        window = candidate.window
        if window is None:
            return False
        self._credit += fraction
        if self._credit < 1.0:
            return False  # not in the mirrored share
        self._credit -= 1.0
        if stable.inflight or self._in_flight >= self.max_in_flight:
            window.shadow_skipped += 1
            return False
        try:
            candidate.acquire()
        except HandleClosed:
            return False
        self._in_flight += 1
        loop = asyncio.get_running_loop()
        copy = (candidate, window, inputs, outputs, stable_answer)
        cost = _known_cost(window, candidate)
        inline = cost is not None and cost < self.inline_below and not window.shadow_thread_only
        if inline and candidate.runtime.computes_on_cpu:
            loop.call_soon(self._run_inline, stable, *copy)  # runs once the response is out
        else:
            self._executor.submit(self._run_on_thread, loop, *copy)
        return True

    def _run_inline(self, stable: VersionHandle, candidate, window, *work) -> None:
        """On the event loop, after the caller's response: skipped if a caller came in."""
        try:
            if stable.inflight:
                window.shadow_skipped += 1
            else:
                self._copy(candidate, window, *work, inline=True)
        finally:
            self._finished(candidate)

    def _run_on_thread(self, loop, candidate, *work) -> None:
        """On the shadow thread; only the lease's release goes back to the loop."""
        try:
            self._copy(candidate, *work, inline=False)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed at shutdown
                loop.call_soon_threadsafe(self._finished, candidate)

    def _copy(self, candidate, window, inputs, outputs, stable_answer, inline: bool) -> None:
        """Predict, compare, summarise into the window, and update what a copy costs."""
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            answer = candidate.runtime.predict(inputs, outputs)
            seconds = time.perf_counter() - started
            agreed, diff = compare(stable_answer, answer, self.atol, self.rtol)
            window.post_shadow(True, seconds, summarize(answer), agreed, diff)
        except Exception:
            window.post_shadow(False, time.perf_counter() - started, None, False, 0.0)
        wall, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
        window.shadow_cost = _cost(_known_cost(window, candidate), wall, cpu, self.inline_below)
        if inline and window.shadow_cost > self.inline_below:
            window.shadow_thread_only = True  # never back on the loop within this window

    def _finished(self, candidate: VersionHandle) -> None:
        self._in_flight -= 1
        candidate.release()
        if not self._in_flight and self._idle is not None:
            self._idle.set()

    async def drain(self) -> None:
        """Wait for shadow predictions in flight (used at shutdown and in tests)."""
        while self._in_flight:
            self._idle = asyncio.Event()
            await self._idle.wait()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False)
