"""Admitting loads: a global bound on loads at once, and the memory pre-flight over records.

:class:`LoadSlots` lets at most ``limit`` loads run at once across all models; loads an
operator asked for (pin, rollback, label, rollout start) wait at the front of the queue, so a
rollback during a fleet-wide republish waits for one load to finish, not for all of them.

:func:`plan_load` is :func:`baton.loading.preflight.plan_memory` over the manager's records:
loaded versions count with their measured footprints, loads under way with their estimates.

    async with slots.slot(urgent=True):
        ...  # load
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from baton.control.lifecycle import LOADING_STATES, VersionState
from baton.control.records import ModelRecord, VersionRecord
from baton.loading.preflight import MemoryLimits, MemoryPlan, estimate_bytes, plan_memory

__all__ = ["LoadSlots", "plan_load"]

S = VersionState
_LOADED = (S.READY, S.SERVING, S.DRAINING)


class LoadSlots:
    """At most ``limit`` holders at once; urgent waiters first, then first come first served.

    Cancelling a waiter removes it from the queue; a slot handed to a waiter that was
    cancelled at the same moment is passed on, never lost."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("at least one load must be allowed at a time")
        self.limit = limit
        self.active = 0
        self._queue: list[tuple[int, int, asyncio.Future]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, f in self._queue if not f.done())

    async def acquire(self, urgent: bool = False) -> None:
        if self.active < self.limit and not self.waiting:
            self.active += 1
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._queue, (0 if urgent else 1, next(self._order), future))
        try:
            await future  # release() hands its slot over by resolving it
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed over just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self._queue:
            _, _, future = heapq.heappop(self._queue)
            if not future.done():
                future.set_result(None)  # the slot moves to this waiter
                return
        self.active -= 1

    @asynccontextmanager
    async def slot(self, urgent: bool = False) -> AsyncIterator[None]:
        await self.acquire(urgent)
        try:
            yield
        finally:
            self.release()


def plan_load(
    models: Iterable[ModelRecord], m: ModelRecord, r: VersionRecord, limits: MemoryLimits
) -> MemoryPlan:
    """The memory pre-flight for loading version ``r`` of ``m`` (``r.files_bytes`` known).

    Sets ``r.estimate``, which later pre-flights count while ``r`` loads."""
    loaded, loading = 0, 0
    retirable = 0
    for rec in models:
        for x in rec.versions.values():
            if x.state in _LOADED and x.memory:
                loaded += x.memory
                if rec is m and x.state is not S.DRAINING:
                    retirable += x.memory
            elif x.state in LOADING_STATES and x is not r:
                loading += x.estimate
    measured = [x for x in m.versions.values() if x.memory and x.files_bytes]
    previous = max(measured, key=lambda x: x.version, default=None)
    r.estimate = estimate_bytes(
        r.files_bytes,
        (previous.memory, previous.files_bytes) if previous else None,
        m.settings.memory.file_factor,
    )
    available = limits.available() if limits.available is not None else None
    return plan_memory(
        r.estimate, available, loaded,
        budget=limits.budget, headroom=limits.headroom, retirable=retirable, loading=loading,
        when_short=m.settings.memory.when_short,
    )  # fmt: skip
