"""The contract every backend implements.

A runtime wraps one model version. The manager constructs it, calls :meth:`Runtime.load` once on
a worker thread, reads :meth:`Runtime.signature`, sends warm-up and live requests through
:meth:`Runtime.predict` (concurrently, from several worker threads), and finally calls
:meth:`Runtime.unload` once no request is in flight. Example::

    rt = OnnxRuntime(Path("repo/m/3"), ModelSettings())
    rt.load()
    outputs = rt.predict({"x": np.ones((1, 4), np.float32)}, None)
    rt.unload()

Implementations must release every resource in ``unload`` (memory included) and must raise
:class:`baton.errors.VersionFailed` from ``load`` with a reason code when the files are bad.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from baton.types import Signature

__all__ = ["Runtime"]


class Runtime(ABC):
    #: Short backend name reported as the model's ``platform`` (e.g. ``onnxruntime_onnx``).
    platform: str = "unknown"
    #: Whether ``predict`` computes on the calling thread's CPU (not on a device it waits for).
    computes_on_cpu: bool = True
    #: Whether requests are answered in this process, so sequences' state can be kept here
    #: (not when worker processes answer them).
    answers_here: bool = True

    @abstractmethod
    def load(self) -> None:
        """Load the model into memory. Blocking; called off the event loop."""

    #: Set by ``load``; what :meth:`signature` returns.
    _signature: Signature | None = None

    def signature(self) -> Signature:
        """Inputs and outputs with v2 datatypes and shapes (``-1`` = dynamic). After load."""
        if self._signature is None:
            raise RuntimeError("signature() before load()")
        return self._signature

    @abstractmethod
    def predict(
        self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None
    ) -> dict[str, np.ndarray]:
        """Compute ``outputs`` (all when ``None``) from validated inputs. Thread-safe."""

    @abstractmethod
    def unload(self) -> None:
        """Release the model and its memory. Idempotent."""

    def warmup_requests(self) -> list[dict[str, np.ndarray]] | None:
        """Warm-up requests the model's own format ships (e.g. TF Serving's warm-up file), used
        when the version has no ``warmup/`` folder. After load."""
        return None

    def structure(self) -> dict | None:
        """What a weights-only update must keep from the version it replaces (tensor names and
        shapes, class labels), or ``None`` when the backend has no such notion. After load."""
        return None

    def memory_bytes(self) -> int | None:
        """Best estimate of the memory this version holds, if the backend knows it."""
        return None
