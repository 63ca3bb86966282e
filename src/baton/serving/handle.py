"""Per-version handles: in-flight counting and drain.

A :class:`VersionHandle` is what the serving map routes to. The request path takes a lease for
exactly one request and gives it back when the answer is computed::

    route = manager.serving_map.get(model)       # one read of the immutable map
    handle = choose_handle(route, requested)     # baton.serving.routing
    with handle.lease():                         # no await between choosing and leasing
        outputs = await handle.predict(inputs, output_names)

Leases may be taken and returned on any thread (the gRPC server answers on its own threads); a
lock guards the count. After the manager removes a version from the serving map it closes the
handle and awaits :meth:`VersionHandle.drained` on the event loop
(:mod:`baton.control.drain`); only then (or after the drain timeout, which is reported) is the
runtime unloaded. A closed handle refuses new leases with :class:`HandleClosed` (the data plane
answers by routing again), except those of the sequences bound to it (below).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from baton.rollout.window import VersionWindow
from baton.runtimes.base import Runtime
from baton.serving.batching import Batcher
from baton.types import Signature, TensorSpec

if TYPE_CHECKING:
    from baton.serving.sequence_state import VersionSequences

__all__ = ["HandleClosed", "VersionHandle"]


class HandleClosed(RuntimeError):
    """The version behind this handle no longer takes requests; route again."""


class VersionHandle:
    """A loaded version as the request path sees it. Create one per loaded runtime."""

    __slots__ = (
        "_closed",
        "_executor",
        "_idle",
        "_idle_loop",
        "_lock",
        "_sequences_ended",
        "batcher",
        "digest",
        "inflight",
        "input_specs",
        "memory_bytes",
        "model",
        "output_datatypes",
        "output_names",
        "predict_seconds",
        "runtime",
        "sequences",
        "served",
        "signature",
        "version",
        "window",
    )

    def __init__(
        self,
        model: str,
        version: int,
        runtime: Runtime,
        signature: Signature,
        executor: Executor | None = None,
        batcher: Batcher | None = None,
        sequences: VersionSequences | None = None,
    ) -> None:
        self.model = model
        self.version = version
        self.runtime = runtime
        self.signature = signature
        self.input_specs: dict[str, TensorSpec] = {t.name: t for t in signature.inputs}
        self.output_names: tuple[str, ...] = tuple(t.name for t in signature.outputs)
        self.output_datatypes: dict[str, str] = {t.name: t.datatype for t in signature.outputs}
        self.inflight = 0
        self.served = 0  # requests answered, for the load the update rate limiter sees
        self.predict_seconds: float | None = None  # one warm prediction, measured at warm-up
        self.memory_bytes: int | None = None  # resident memory its load added, if measured
        self.digest: str | None = None  # SHA-256 of the manifest it was verified against
        self._executor = executor
        self.batcher = batcher
        self.sequences = sequences  # the state store of a stateful version
        self._sequences_ended = False
        self.window: VersionWindow | None = None  # live stats while a rollout involves it
        self._idle: asyncio.Event | None = None  # set (on its loop) when the last lease returns
        self._idle_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()  # inflight, served, _closed and _idle change under it
        self._closed = False

    def acquire(self, sequence: bool = False) -> None:
        """Count one request in flight; pair with exactly one :meth:`release` (any thread).
        A closed handle refuses (:class:`HandleClosed`), except a ``sequence`` request until
        :meth:`end_sequences`."""
        with self._lock:
            if self._closed and (not sequence or self._sequences_ended):
                raise HandleClosed(f"{self.model} version {self.version} is unloaded")
            self.inflight += 1

    def release(self) -> None:
        with self._lock:
            self.inflight -= 1
            self.served += 1
            idle = self._idle if self.inflight == 0 else None
        if idle is not None:  # a drain waits on its loop, maybe not this thread's
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                self._idle_loop.call_soon_threadsafe(idle.set)

    @contextmanager
    def lease(self) -> Iterator[VersionHandle]:
        """Hold one request in flight for the duration of the ``with`` block."""
        self.acquire()
        try:
            yield self
        finally:
            self.release()

    async def predict(
        self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Run the runtime off the event loop (through the batcher, if the version has one).
        Call only while holding a lease."""
        if self.batcher is not None:
            return await self.batcher.submit(inputs, outputs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.runtime.predict, inputs, outputs)

    async def drained(self, timeout: float) -> bool:
        """Wait until no request is in flight; ``False`` if ``timeout`` seconds passed first."""
        with self._lock:
            if self.inflight == 0:
                return True
            self._idle_loop = asyncio.get_running_loop()
            self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    @property
    def closed(self) -> bool:
        """Retired: it takes no new requests (but its sequences', until :meth:`end_sequences`)."""
        return self._closed

    def close(self) -> None:
        """Refuse new leases from now on (leases already taken run to completion), except
        those of the sequences still bound to this version."""
        with self._lock:
            self._closed = True

    def end_sequences(self) -> None:
        """Refuse every new lease, sequences' included (the version is about to unload)."""
        with self._lock:
            self._closed = self._sequences_ended = True

    def __repr__(self) -> str:
        return f"<VersionHandle {self.model}:{self.version} inflight={self.inflight}>"
