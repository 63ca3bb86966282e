"""The protocol-agnostic data plane: everything REST and gRPC adapters need, and nothing more.

Adapters decode a request into an :class:`InferRequest`, call :meth:`DataPlane.infer` and encode
the :class:`InferResponse`; errors are :class:`baton.errors.BatonError` subclasses that know
their status. The request path reads one immutable serving map, routes, validates against the
chosen version's signature, takes a lease on that version's handle and runs it off the loop.

A request that names a ``sequence_id`` (:mod:`baton.serving.sequences`) goes to the version its
sequence is bound to (a START is routed like any request, a canary placing it by its id), one
step of a sequence at a time, with the sequence's state fed in and the new state kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence as Tensors
from dataclasses import dataclass, field

import numpy as np

from baton import __version__
from baton.api.internal import internal_error
from baton.control.lifecycle import VersionState
from baton.control.manager import Manager
from baton.errors import BatonError, InvalidRequest, NotFound, TooManyRequests
from baton.loading.contract import check_inputs
from baton.observe.metrics import Metrics
from baton.serving.handle import HandleClosed, VersionHandle
from baton.serving.routing import choose_handle
from baton.serving.sequences import CUT, ENDED, SequenceControl, sequence_control
from baton.serving.serving_map import ModelRoute
from baton.serving.shadow import ShadowRunner
from baton.serving.split import WeylSequence, key_point, split_point
from baton.types import datatype_of, is_digits

__all__ = [
    "DataPlane",
    "InferRequest",
    "InferResponse",
    "OutputTensor",
    "inference_error",
    "response_of",
]

log = logging.getLogger("baton.api")
EXTENSIONS = ("binary_tensor_data", "model_repository", "sequence")


@dataclass(slots=True)
class InferRequest:
    inputs: dict[str, np.ndarray]
    datatypes: dict[str, str]
    outputs: list[str] | None = None
    id: str | None = None
    parameters: dict = field(default_factory=dict)
    session: str | None = None  # sticky-routing key (x-baton-session header)


@dataclass(slots=True)
class OutputTensor:
    name: str
    datatype: str
    data: np.ndarray


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str
    outputs: list[OutputTensor]
    id: str | None = None


class DataPlane:
    def __init__(
        self,
        manager: Manager,
        metrics: Metrics,
        server_name: str = "baton",
        session_parameter: str | None = "session",
        max_inflight: int = 0,
    ) -> None:
        self._manager = manager
        self._metrics = metrics
        self.max_inflight = max_inflight  # 0 = no limit
        self.inflight = 0  # requests being answered, on any thread (see enter)
        self._inflight_lock = threading.Lock()
        self.ready_checks: list = []  # more conditions for readiness (callables → bool)
        self.server_name = server_name
        self.session_parameter = session_parameter
        self.shutting_down = False
        self._points = WeylSequence()
        self.shadow = ShadowRunner()

    # ---- health and metadata ------------------------------------------------------------
    def live(self) -> bool:
        return True

    def ready(self, *, ignoring: Callable[[], bool] | None = None) -> bool:
        """Everything present at start has loaded (or failed), the server is not stopping, and
        every extra condition holds (a fleet node: it serves every model the fleet manages;
        with workers: all serve and have heard so) but ``ignoring``."""
        return (
            self._manager.synced
            and not self.shutting_down
            and all(check() for check in self.ready_checks if check != ignoring)
        )

    def server_metadata(self) -> dict:
        return {"name": self.server_name, "version": __version__, "extensions": list(EXTENSIONS)}

    def _handle(self, model: str, version: str | None) -> VersionHandle:
        route = self._manager.serving_map.get(model)
        if route is None:
            raise NotFound(f"unknown model '{model}'")
        return choose_handle(route, version)

    def model_ready(self, model: str, version: str | None) -> bool:
        try:
            self._handle(model, version)
        except BatonError:
            return False
        return True

    def why_not_ready(self, model: str, version: str | None) -> str:
        """Why ``model`` (or one version or label of it) cannot answer requests now."""
        try:
            self._handle(model, version)
        except BatonError as exc:
            reason = str(exc)
        else:
            return f"model '{model}' is ready"
        record = self._manager.models().get(model)
        if record is None:
            return reason
        wanted = version if version and is_digits(version) else None
        states = [
            f"version {v} {r.state.value}" + (f" ({r.reason})" if r.reason else "")
            for v, r in sorted(record.versions.items())
            if r.state is not None and (wanted is None or str(v) == wanted)
        ]
        return reason + (f"; {', '.join(states)}" if states else "")

    def model_metadata(self, model: str, version: str | None) -> dict:
        handle = self._handle(model, version)
        record = self._manager.model(model)
        versions = sorted(v for v, r in record.versions.items() if r.state is VersionState.SERVING)
        meta = {
            "name": model,
            "versions": [str(v) for v in versions],
            "platform": handle.runtime.platform,
            **handle.signature.to_json(),
        }
        if version:
            meta["version"] = str(handle.version)
        return meta

    # ---- inference ----------------------------------------------------------------------
    async def infer(self, model: str, version: str | None, request: InferRequest) -> InferResponse:
        """Run one request on the version routing picks; the response names that version.

        While a canary splits traffic, an unversioned request that the candidate fails is
        answered by the stable version instead (the failure still counts against the
        candidate), so a bad candidate costs clients nothing. In a shadow step, a copy of each
        unversioned request goes to the candidate after the stable version has answered.

        Beyond ``max_inflight`` requests at once, a request is refused at once
        (:class:`TooManyRequests`: 429 / ``RESOURCE_EXHAUSTED``)."""
        self.enter()
        try:
            return await self._infer(model, version, request)
        finally:
            self.leave()

    def enter(self) -> None:
        """Count one request in flight (any thread), or refuse it beyond ``max_inflight``
        (:class:`TooManyRequests`); pair with exactly one :meth:`leave`."""
        with self._inflight_lock:
            if self.max_inflight and self.inflight >= self.max_inflight:
                raise TooManyRequests(
                    f"the server has {self.inflight} requests in flight, its limit "
                    f"(--max-inflight {self.max_inflight}); retry shortly"
                )
            self.inflight += 1

    def leave(self) -> None:
        with self._inflight_lock:
            self.inflight -= 1

    def metric_model(self, model: str) -> str:
        """The ``model`` label for a refused request: the name for a model the server knows,
        ``unknown`` for anything else (so clients cannot mint label values)."""
        return model if model in self._manager.models() else "unknown"

    async def _infer(self, model: str, version: str | None, request: InferRequest) -> InferResponse:
        control = sequence_control(request.parameters) if request.parameters else None
        if control is not None:
            return await self._step(model, version, request, control)
        for _ in range(2):
            route = self._manager.serving_map.get(model)
            if route is None:
                raise NotFound(f"unknown model '{model}'")
            canary = route.canary if not version else None
            point = split_point(self._session(request), self._points) if canary else 0.0
            handle = choose_handle(route, version, point)
            try:
                outputs = await self._run(handle, request)
            except HandleClosed:
                continue  # retired between routing and leasing; route again
            except BatonError:
                stable = route.versions.get(canary.stable) if canary else None
                if stable is None or handle is stable:
                    raise
                try:
                    handle, outputs = stable, await self._run(stable, request)
                except HandleClosed:
                    continue  # the stable version retired meanwhile; route again
            if canary is not None and canary.shadow and handle.version == canary.stable:
                candidate = route.versions.get(canary.candidate)
                if candidate is not None:  # a copy for the candidate; the caller is not kept
                    self.shadow.offer(
                        candidate, request.inputs, request.outputs, outputs,
                        handle, canary.shadow,
                    )  # fmt: skip
            return response_of(model, handle, outputs, request.id)
        raise BatonError(f"model '{model}' changed while routing; retry")

    async def _step(
        self, model: str, version: str | None, request: InferRequest, control: SequenceControl
    ) -> InferResponse:
        """One request of a sequence: on the version the sequence is bound to (its START is
        routed, a canary placing it by its id), after the sequence's previous request."""
        route = self._manager.serving_map.get(model)
        # a model withdrawn from the repository still finishes the sequences it drains
        index = route.sequences if route is not None else self._manager.sequences.get(model)
        if index is None or (route is None and control.start):
            if route is None:
                raise NotFound(f"unknown model '{model}'")
            choose_handle(route, version)  # nothing serving yet: 503, an unknown version: 404
            raise InvalidRequest(
                f"model '{model}' keeps no sequences: sequence_id needs a stateful model "
                "(sequence in its model.yaml)"
            )
        now = time.monotonic()
        if control.start:
            assert route is not None
            point = key_point(str(control.id)) if route.canary and not version else 0.0
            handle = choose_handle(route, version, point)
            _one_step(handle, request)
            sequence = index.start(control.id, handle, now)
        else:
            sequence = index.get(control.id, now)
            _one_step(sequence.handle, request)
            if version and not _names(version, sequence.handle, route):
                if route is not None:
                    choose_handle(route, version)  # one that is not serving at all: 404
                raise InvalidRequest(
                    f"sequence {control.id!r} of model '{model}' is on version "
                    f"{sequence.handle.version}, not '{version}'; send its requests without a "
                    "version, or to that one"
                )
        async with sequence.lock:  # FIFO: a sequence's requests run in the order they came
            index.check(sequence)  # still live (not ended, idled out or cut while waiting)
            handle, store = sequence.handle, sequence.store
            try:
                outputs = await self._run(handle, request, store.feed(sequence.state),
                                          store.state_outputs)  # fmt: skip
                sequence.state = store.keep(outputs)
            except HandleClosed:  # its version is unloading: the sequence was cut
                index.end(sequence, CUT)
                index.check(sequence)
                raise
            except BaseException:
                if control.start:  # a START that failed leaves no sequence behind
                    index.end(sequence, "failed on its first request")
                raise
            sequence.last_used = time.monotonic()
            if control.end:
                index.end(sequence, ENDED)
        return response_of(model, handle, outputs, request.id)

    async def _run(
        self,
        handle: VersionHandle,
        request: InferRequest,
        state: dict[str, np.ndarray] | None = None,
        state_outputs: Tensors[str] = (),
    ) -> dict[str, np.ndarray]:
        """Validate against ``handle``'s signature, hold a lease, predict, count it. A
        sequence's step passes its ``state`` (more inputs) and ``state_outputs`` (computed
        too, whatever the request asks for)."""
        if handle.sequences is not None and state is None:
            raise InvalidRequest(
                f"model '{handle.model}' is stateful: send sequence_id, with sequence_start on "
                "a sequence's first request"
            )
        check_inputs(handle.input_specs, request.inputs, request.datatypes)
        wanted = request.outputs
        if wanted is not None:
            unknown = [n for n in wanted if n not in handle.output_names]
            if unknown:
                raise InvalidRequest(
                    f"unknown output(s) {unknown}; the model produces {list(handle.output_names)}"
                )
        inputs = request.inputs
        if state is not None:
            inputs = {**inputs, **state}
            wanted = None if wanted is None else [*wanted, *state_outputs]
        ok, failed, latency, inflight = self._metrics.request_children(handle.model, handle.version)
        handle.acquire(state is not None)
        window = handle.window
        inflight.inc()
        started = time.perf_counter()
        try:
            outputs = await handle.predict(inputs, wanted)
        except Exception as exc:
            failed.inc()
            if window is not None:
                window.record_error()
            raise inference_error(exc, handle) from exc
        finally:
            inflight.dec()
            handle.release()
        seconds = time.perf_counter() - started
        latency.observe(seconds)
        ok.inc()
        if window is not None:
            window.record(seconds, outputs)
        return outputs

    def _session(self, request: InferRequest) -> str | None:
        if request.session:
            return request.session
        value = request.parameters.get(self.session_parameter) if self.session_parameter else None
        return None if value is None or isinstance(value, bool) else str(value)


def _names(requested: str, handle: VersionHandle, route: ModelRoute | None) -> bool:
    """Whether a request for version (or label) ``requested`` may go to ``handle``: its own
    number (routable or draining), or a label that names it now."""
    if is_digits(requested):
        return int(requested) == handle.version
    return route is not None and route.labels.get(requested) == handle.version


def _one_step(handle: VersionHandle, request: InferRequest) -> None:
    """Refuse a sequence's request that carries more (or less) than one step: a state with a
    batch dimension is fed as a batch of one."""
    store = handle.sequences
    if store is None or not store.batched:
        return
    for name, array in request.inputs.items():
        if array.ndim == 0 or array.shape[0] != 1:
            raise InvalidRequest(
                f"a sequence's request is one step: input '{name}' needs a batch size of 1, "
                f"got shape {list(array.shape)}"
            )


def response_of(
    model: str, handle: VersionHandle, outputs: dict[str, np.ndarray], request_id: str | None
) -> InferResponse:
    """The answer naming ``handle``'s version, each output with its declared datatype."""
    types = handle.output_datatypes
    return InferResponse(
        model,
        str(handle.version),
        [
            OutputTensor(name, types.get(name) or datatype_of(array), array)
            for name, array in outputs.items()
        ],
        request_id,
    )


def inference_error(exc: Exception, handle: VersionHandle) -> BatonError:
    """The error to answer for ``exc``, raised by ``handle``'s runtime: bad input values are
    :class:`InvalidRequest`; anything else is logged under a request id and answered 500."""
    if isinstance(exc, BatonError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    # ONNX Runtime reports bad input values (e.g. an index out of range) as INVALID_ARGUMENT.
    if "INVALID_ARGUMENT" in text:
        return InvalidRequest(f"inference failed: {text}")
    where = f"model '{handle.model}' version {handle.version} failed"
    return BatonError(internal_error(log, where).replace("internal error", where, 1))
