"""A scriptable in-memory runtime for tests and demos of the pipeline without a model file.

``FakeRuntime`` computes ``y = x + offset`` on one FP32 input ``x`` of shape ``[-1, n]`` and can be
told to fail at load or on chosen inputs, to produce non-finite outputs, to take time to load
or predict, to hold memory while loaded, to block its load until released, or to report a
different signature — everything the manager must survive.

A blocking load takes its memory first, then waits for ``load_gate`` (a ``threading.Event``)
and sets ``load_started`` as it begins, so a test can hold a load mid-way and cancel it::

    gate = threading.Event()
    runtime = FakeRuntime(load_gate=gate, hold_bytes=50 * 2**20)
    ...                      # the load is under way, holding 50 MiB
    gate.set()               # let it finish
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from baton.errors import VersionFailed
from baton.runtimes.base import Runtime
from baton.types import Signature, TensorSpec

__all__ = ["FakeRuntime"]


class FakeRuntime(Runtime):
    platform = "fake"

    def __init__(
        self,
        offset: float = 0.0,
        *,
        width: int = 4,
        fail_load: str | None = None,
        nan_output: bool = False,
        load_seconds: float = 0.0,
        predict_seconds: float = 0.0,
        signature: Signature | None = None,
        fail_predict: Callable[[np.ndarray], bool] | None = None,
        hold_bytes: int = 0,
        load_gate: threading.Event | None = None,
    ) -> None:
        self.offset = offset
        self.fail_load = fail_load
        self.nan_output = nan_output
        self.load_seconds = load_seconds
        self.predict_seconds = predict_seconds
        self.fail_predict = fail_predict
        self._signature = signature or Signature(
            (TensorSpec("x", "FP32", (-1, width)),), (TensorSpec("y", "FP32", (-1, width)),)
        )
        self.hold_bytes = hold_bytes
        self.load_gate = load_gate
        self.load_started = threading.Event()
        self._ballast: bytearray | None = None
        self.loaded = False
        self.unloaded = False
        self.calls = 0
        self._lock = threading.Lock()

    def load(self) -> None:
        self.load_started.set()
        self._ballast = bytearray(self.hold_bytes)  # zero-filled, so really resident
        if self.load_gate is not None:
            self.load_gate.wait()
        if self.load_seconds:
            time.sleep(self.load_seconds)
        if self.fail_load:
            self._ballast = None
            raise VersionFailed("load_error", self.fail_load)
        self.loaded = True

    def signature(self) -> Signature:
        return self._signature

    def predict(
        self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None
    ) -> dict[str, np.ndarray]:
        if not self.loaded or self.unloaded:
            raise RuntimeError("predict() on a runtime that is not loaded")
        with self._lock:
            self.calls += 1
        if self.predict_seconds:
            time.sleep(self.predict_seconds)
        x = next(iter(inputs.values()))
        if self.fail_predict is not None and self.fail_predict(x):
            raise RuntimeError("the model failed on this input")
        y = np.full_like(x, np.nan) if self.nan_output else x + np.float32(self.offset)
        name = self._signature.outputs[0].name
        return {name: y}

    def unload(self) -> None:
        self._ballast = None
        self.unloaded = True
