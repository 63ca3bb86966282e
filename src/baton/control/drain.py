"""Retiring a version: stop new requests, wait for those in flight, unload, give memory back.

The manager has already made the version unroutable (and published DRAINING) when it calls
:func:`drain_and_unload`; requests that leased the handle before that finish on it. After
``timeout`` seconds the runtime is unloaded anyway, and the result says so (the manager
reports it as ``drain_timeout``). Unloading runs on ``executor``, off the event loop. A runtime
whose requests are served in worker processes drains there while it unloads
(:class:`baton.workers.pooled.PooledRuntime`) and reports that drain as ``runtime.drain``.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass

from baton.loading.memory import release_memory
from baton.serving.handle import VersionHandle

__all__ = ["Drained", "drain_and_unload"]


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
    handle.close()
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
