"""Inference on a gRPC worker thread, without a trip to the event loop.

The data plane's own path wakes two threads per request (the loop hands the prediction to the
inference pool, the pool hands the answer back), and waking a thread costs more CPU than
anything else on a small model. A gRPC call already runs on a worker thread of the server, so
the plain case is answered there, start to end: the serving map is one immutable snapshot,
routing and the signature check are pure, and the lease (:class:`VersionHandle`) and the
in-flight count (:meth:`DataPlane.enter`) are thread-safe — a drain still waits for the
request, a swap still cannot slip between routing and leasing (a closed handle refuses the
lease and the request is routed again).

The plain case: a version with no canary split, no dynamic batching, no live rollout window and
no sequences, and a request that passes the checks. Anything else — refusals and their
messages, canary routing with its fallback and shadow copies, batching, rollout statistics,
sequences — is
:meth:`DataPlane.infer` on the loop, unchanged, so both protocols keep one behaviour.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import CancelledError, Future
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol, TypeVar

from baton.api.dataplane import (
    DataPlane,
    InferRequest,
    InferResponse,
    inference_error,
    response_of,
)
from baton.errors import BatonError, Unavailable
from baton.loading.contract import check_inputs
from baton.observe.metrics import Metrics
from baton.serving.handle import HandleClosed, VersionHandle
from baton.serving.routing import choose_handle
from baton.serving.serving_map import ServingMap

__all__ = ["ThreadedInfer", "wait_on_loop"]

T = TypeVar("T")
#: How often a thread waiting on the loop checks that the loop still runs (seconds).
LOOP_CHECK_SECONDS = 1.0
#: Versions whose warm prediction took less run without taking one of the prediction slots.
QUICK_SECONDS = 1e-3


class HasServingMap(Protocol):
    @property
    def serving_map(self) -> ServingMap: ...


def wait_on_loop(
    loop: asyncio.AbstractEventLoop,
    coroutine: Coroutine[Any, Any, T],
    blocking: Callable[[], AbstractContextManager] = nullcontext,
) -> T:
    """Run ``coroutine`` on ``loop`` from another thread and return (or raise) its result;
    the wait happens inside ``blocking()``. :class:`Unavailable` if the loop stops (or cancels
    it) first."""
    try:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, loop)
    except RuntimeError:  # the loop is closed
        coroutine.close()
        raise Unavailable("the server is stopping") from None
    with blocking():
        while True:
            try:
                return future.result(timeout=LOOP_CHECK_SECONDS)
            except TimeoutError:
                if not loop.is_running():
                    future.cancel()
                    raise Unavailable("the server is stopping") from None
            except CancelledError:  # the loop cancelled it (it is shutting down)
                raise Unavailable("the server is stopping") from None


class ThreadedInfer:
    """``infer`` is :meth:`DataPlane.infer` for callers on threads other than the loop's.

    ``serving`` is what the data plane routes with (the manager, or a worker's replica);
    ``threads`` bounds how many predictions of versions that are not quick run on callers'
    threads at once; callers wait for the loop, and for those slots, inside ``blocking()``.
    """

    def __init__(
        self,
        dataplane: DataPlane,
        serving: HasServingMap,
        metrics: Metrics,
        loop: asyncio.AbstractEventLoop,
        threads: int,
        blocking: Callable[[], AbstractContextManager] = nullcontext,
    ) -> None:
        self._dataplane = dataplane
        self._serving = serving
        self._metrics = metrics
        self._loop = loop
        self._slots = threading.BoundedSemaphore(threads)
        self._blocking = blocking

    def infer(self, model: str, version: str | None, request: InferRequest) -> InferResponse:
        """Answer ``request`` (call from any thread but the loop's); raises what
        :meth:`DataPlane.infer` raises."""
        handle = self._lease(model, version, request)
        if handle is None:
            infer = self._dataplane.infer(model, version, request)
            return wait_on_loop(self._loop, infer, self._blocking)
        try:
            outputs = self._predict(handle, request)
        finally:
            handle.release()
            self._dataplane.leave()
        return response_of(model, handle, outputs, request.id)

    def _lease(
        self, model: str, version: str | None, request: InferRequest
    ) -> VersionHandle | None:
        """The version a plain request goes to, leased and counted in flight; ``None`` when the
        data plane must decide (a refusal, a canary, batching, a rollout window)."""
        route = self._serving.serving_map.get(model)
        if route is None or route.canary is not None or route.sequences is not None:
            return None
        if "sequence_id" in request.parameters:
            return None
        try:
            handle = choose_handle(route, version)
            if handle.batcher is not None or handle.window is not None:
                return None
            check_inputs(handle.input_specs, request.inputs, request.datatypes)
            wanted = request.outputs
            if wanted is not None and any(n not in handle.output_names for n in wanted):
                return None
            self._dataplane.enter()
        except BatonError:
            return None
        try:
            handle.acquire()
        except HandleClosed:  # retired since the map was read: the data plane routes again
            self._dataplane.leave()
            return None
        return handle

    def _predict(self, handle: VersionHandle, request: InferRequest) -> dict:
        """Run the runtime (a version that is not quick waits for a slot) and count it."""
        ok, failed, latency, inflight = self._metrics.request_children(handle.model, handle.version)
        quick = handle.predict_seconds is not None and handle.predict_seconds < QUICK_SECONDS
        inflight.inc()
        try:
            with nullcontext() if quick else self._slow():
                started = time.perf_counter()
                outputs = handle.runtime.predict(request.inputs, request.outputs)
                seconds = time.perf_counter() - started
        except Exception as exc:
            failed.inc()
            raise inference_error(exc, handle) from exc
        finally:
            inflight.dec()
        latency.observe(seconds)
        ok.inc()
        return outputs

    @contextmanager
    def _slow(self) -> Iterator[None]:
        """Around a prediction that is not quick: wait for a slot, let other calls run."""
        with self._blocking(), self._slots:
            yield
