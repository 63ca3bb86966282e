"""Shadow traffic: copies of live requests sent to a candidate whose answers nobody receives.

The data plane offers every unversioned request answered by the stable version during a shadow
step; ``rollout.shadow_fraction`` of them are mirrored (evenly, every n-th request, not by
chance). A copy runs only when no caller is in flight on the stable version and fewer than
``max_in_flight`` shadow predictions are running — other offers are dropped and counted in
``shadow_skipped`` — so shadow traffic samples the server's idle moments instead of queueing
with callers. Copies run after the caller's answer has been produced, on their own thread at
the lowest CPU priority. The candidate's answer is
compared with the stable one (``atol``/``rtol``, exact for non-float outputs) and summarised
on the shadow thread too; the event loop only hands out and takes back the candidate's lease.
Results land in the candidate's live window, where the gates read the agreement rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from baton.handle import HandleClosed, VersionHandle
from baton.rollout.window import summarize

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
            diff = float(np.max(np.abs(got.astype(np.float64) - want))) if want.size else 0.0
            worst = max(worst, diff)
            agreed = agreed and bool(np.allclose(got, want, atol=atol, rtol=rtol))
        else:
            agreed = agreed and bool(np.array_equal(got, want))
    return agreed, worst


class ShadowRunner:
    def __init__(self, max_in_flight: int = 1, atol: float = 1e-5, rtol: float = 1e-4) -> None:
        self.max_in_flight = max_in_flight
        self.atol, self.rtol = atol, rtol
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
        callers_in_flight: int = 0,
        fraction: float = 1.0,
    ) -> bool:
        """Start a shadow prediction if this request is in the sampled ``fraction`` and the
        server is idle enough; returns whether it did."""
        window = candidate.window
        if window is None:
            return False
        self._credit += fraction
        if self._credit < 1.0:
            return False  # not in the mirrored share
        self._credit -= 1.0
        if callers_in_flight or self._in_flight >= self.max_in_flight:
            window.shadow_skipped += 1
            return False
        try:
            candidate.acquire()
        except HandleClosed:
            return False
        self._in_flight += 1
        loop = asyncio.get_running_loop()
        self._executor.submit(self._work, loop, candidate, window, inputs, outputs, stable_answer)
        return True

    def _work(self, loop, candidate, window, inputs, outputs, stable_answer) -> None:
        """On the shadow thread: predict, compare, summarise; only the release goes back."""
        started = time.perf_counter()
        try:
            answer = candidate.runtime.predict(inputs, outputs)
            seconds = time.perf_counter() - started
            agreed, diff = compare(stable_answer, answer, self.atol, self.rtol)
            window.post_shadow(True, seconds, summarize(answer), agreed, diff)
        except Exception:
            window.post_shadow(False, time.perf_counter() - started, None, False, 0.0)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed at shutdown
                loop.call_soon_threadsafe(self._finished, candidate)

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
