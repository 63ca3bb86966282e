"""Which models the reconcile loop looks at next: a work queue of dirty models and timers.

A model is *dirty* when something that concerns it changed (an offer, an operator's intent, a
load or drain that ended); it is *due* at a time on the manager's clock when a timer asked for
it (the rate limiter's wait, a running rollout's next gate check). :meth:`ReconcileQueue.next`
hands out dirty models in name order; :meth:`ReconcileQueue.done` takes one off once it has
nothing left to do. One loop timer wakes the manager for the earliest due time; with a fake
clock, the next tick after that time finds it due.

    queue.mark("m")                    # wakes the loop
    queue.at("m", clock() + 30.0)      # ... and again in 30 s
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable

__all__ = ["ReconcileQueue"]


class ReconcileQueue:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.wake = asyncio.Event()  # set whenever there may be something to do
        self._dirty: set[str] = set()
        self._due: list[tuple[float, str]] = []  # heap of (manager-clock time, model)
        self._due_at: dict[str, float] = {}  # the earliest time each model is due
        self._timer: asyncio.TimerHandle | None = None

    def mark(self, name: str) -> None:
        """``name`` has something to reconcile: on the next tick."""
        self._dirty.add(name)
        self.wake.set()

    def at(self, name: str, when: float) -> None:
        """Reconcile ``name`` at manager-clock time ``when`` (the earliest asked for wins)."""
        if self._due_at.get(name, float("inf")) <= when:
            return
        self._due_at[name] = when
        heapq.heappush(self._due, (when, name))
        if self._due[0] == (when, name):
            self._arm(when)

    def next(self, now: float | None = None) -> str | None:
        """The next model to reconcile (timers due by ``now`` count as dirty; default: the
        clock), or ``None``. A reconcile pass gives its own start time, so a timer it sets
        (always later than that) waits for the next pass instead of spinning this one."""
        now = self._clock() if now is None else now
        while self._due and self._due[0][0] <= now:
            when, name = heapq.heappop(self._due)
            if self._due_at.get(name) == when:
                del self._due_at[name]
                self._dirty.add(name)
        return min(self._dirty) if self._dirty else None

    def done(self, name: str) -> None:
        """``name`` has nothing left to do (until it is marked again)."""
        self._dirty.discard(name)

    @property
    def empty(self) -> bool:
        return not self._dirty

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, when - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._fired)

    def _fired(self) -> None:
        self._timer = None
        self.wake.set()
        if self._due:  # a loop may fire a timer slightly early: keep one armed until it is due
            self._arm(max(self._due[0][0], self._clock() + 0.001))
