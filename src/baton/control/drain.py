"""Retiring a version: stop new requests, wait for those in flight, unload, give memory back.

The manager has already made the version unroutable (and published DRAINING) when it calls
:func:`drain_and_unload`; requests that leased the handle before that finish on it. After
``timeout`` seconds the runtime is unloaded anyway, and the result says so (the manager
reports it as ``drain_timeout``). Unloading runs on ``executor``, off the event loop. A runtime
whose requests are served in worker processes drains there while it unloads
(:class:`baton.workers.pooled.PooledRuntime`) and reports that drain as ``runtime.drain``.

A stateful version first retires its live sequences (:func:`retire_sequences`): in ``migrate``
mode each is carried to the version that now serves its id, the rest finish where they are;
the version waits for them up to the model's sequence ``drain_timeout``, then ends those left
(``cut``) and refuses their further requests before it drains and unloads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from baton.loading.memory import release_memory
from baton.serving.handle import VersionHandle
from baton.serving.sequences import Migration, Sequence, SequenceIndex
from baton.settings import SequenceSettings

__all__ = [
    "Drained",
    "SequencesRetired",
    "drain_and_unload",
    "retire_sequences",
    "unload_report",
]

#: How often a version waiting for its sequences checks whether they have ended (seconds).
SEQUENCE_POLL = 0.05
#: Migration gets the sequence drain_timeout, and at least this long (seconds): a timeout of 0
#: means "do not wait for sequences to end", not "do not migrate them".
MIGRATION_FLOOR = 5.0


@dataclass(frozen=True, slots=True)
class Drained:
    seconds: float  # from retirement to zero requests in flight (or the timeout)
    forced: bool  # unloaded with requests still in flight
    inflight: int  # requests in flight when it was forced


async def drain_and_unload(
    handle: VersionHandle | None, timeout: float, executor: Executor
) -> Drained:
    started = time.perf_counter()
    if handle is None:
        return Drained(0.0, False, 0)
    handle.end_sequences()  # no more leases at all, sequences' included
    forced = not await handle.drained(timeout)
    inflight = handle.inflight
    seconds = time.perf_counter() - started
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(executor, handle.runtime.unload)
    await loop.run_in_executor(executor, release_memory)
    inflight = inflight if forced else 0
    elsewhere = getattr(handle.runtime, "drain", None)  # drained in worker processes
    if elsewhere is not None:
        seconds, forced = max(seconds, elsewhere[0]), forced or elsewhere[1]
        inflight += elsewhere[2]
    return Drained(seconds, forced, inflight)


@dataclass(frozen=True, slots=True)
class SequencesRetired:
    live: int  # sequences on the version when it retired
    migration: Migration | None  # what migrate mode carried over (None in drain mode)
    seconds: float  # until the last of them ended (or the timeout)
    cut: int  # ended at the timeout


async def retire_sequences(
    index: SequenceIndex,
    handle: VersionHandle,
    settings: SequenceSettings,
    target_for: Callable[[Sequence], VersionHandle | None],
    executor: Executor,
    stopping: Callable[[], bool] = lambda: False,
) -> SequencesRetired:
    """Move or wait out the live sequences of a closed ``handle`` (see the module docstring);
    migration hooks run on ``executor``; migrating takes at most the sequence
    ``drain_timeout`` (at least ``MIGRATION_FLOOR``), waiting for the rest to end at most what
    is left of it, and waiting ends as soon as ``stopping()`` (the server is shutting down: the
    rest are cut)."""
    started = time.perf_counter()
    live = len(index.on(handle))
    migration = None
    if live and settings.swap == "migrate":
        loop = asyncio.get_running_loop()

        async def convert(fn, *args):
            return await loop.run_in_executor(executor, fn, *args)

        limit = max(settings.drain_timeout, MIGRATION_FLOOR)
        migration = await index.migrate(handle, target_for, convert, limit)
    deadline = started + settings.drain_timeout
    while index.on(handle) and time.perf_counter() < deadline and not stopping():
        await asyncio.sleep(SEQUENCE_POLL)
    cut = index.cut(handle)
    return SequencesRetired(live, migration, time.perf_counter() - started, cut)


def unload_report(
    drained: Drained, retired: SequencesRetired | None, drain_timeout: float, stopping: bool
) -> tuple[str | None, str | None, dict]:
    """(reason, message, data) of the UNLOADED state a retired version ends in: a forced
    unload, sequences cut at shutdown or at the sequence drain timeout, or a clean drain."""
    reason = message = None
    if drained.forced:
        reason = "drain_timeout"
        message = (f"drain timeout after {drain_timeout:g} s with {drained.inflight} in flight; "
                   "unloaded anyway")  # fmt: skip
    elif retired is not None and retired.cut and stopping:
        reason = "shutdown"
        message = f"{retired.cut} of {retired.live} live sequences ended: the server stopped"
    elif retired is not None and retired.cut:
        reason = "sequence_drain_timeout"
        message = (f"{retired.cut} of {retired.live} live sequences had not ended after "
                   f"{retired.seconds:.1f} s (sequence drain_timeout): ended")  # fmt: skip
    data: dict = {"drain_seconds": drained.seconds, "forced": drained.forced}
    if retired is not None:
        data |= {"sequences": retired.live, "sequences_cut": retired.cut,
                 "sequence_drain_seconds": round(retired.seconds, 3)}  # fmt: skip
    return reason, message, data
