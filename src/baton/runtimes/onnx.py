"""ONNX Runtime, the reference backend: ``<version>/model.onnx``."""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from baton.errors import InvalidRequest, VersionFailed
from baton.runtimes.base import Runtime
from baton.runtimes.compile_cache import CompileCache
from baton.settings import ModelSettings
from baton.types import Signature, TensorSpec

__all__ = ["OnnxRuntime"]

MODEL_FILE = "model.onnx"

#: ONNX Runtime's type strings → v2 datatypes.
_ORT_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def _spec(arg: ort.NodeArg) -> TensorSpec:
    datatype = _ORT_TYPES.get(arg.type)
    if datatype is None:
        raise VersionFailed("unsupported_type", f"tensor '{arg.name}' has type {arg.type}")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or ()))
    return TensorSpec(arg.name, datatype, shape)


class OnnxRuntime(Runtime):
    """One ONNX model version, served by an ONNX Runtime session.

    With a compile cache (the server's default), the session comes from it
    (:mod:`baton.runtimes.compile_cache`), which also decides what is shared between the
    processes that load the same version — ``--workers N`` loads it once per worker:

    - a model of 16 MiB or more (model file and external data together), served on the CPU,
      whose packed entry fits in half the cache: its weights, their pre-packed copies and
      any constants the optimiser made are memory-mapped from one file in the cache
      (:mod:`baton.runtimes.shared_weights`), so every worker shares one copy in the page
      cache. The first load of a version on a node writes that entry (about twice the
      weights, on disk), then maps it as well; the others only check it and map it. That
      first load holds the weights once, not twice, at its peak: ORT maps them from
      ``model.onnx`` while it optimises and writes the entry (plus heap copies of pre-packed
      weights, until the entry is written). What each worker still holds on its own:
      initializers under 64 KiB (kept in the graph), ORT's graph and kernels, and the arena
      for activations.
    - any other model: every worker has its own copy on its heap. ORT copies weights embedded
      in ``model.onnx``, pre-packs MatMul/Gemm/Conv weights into heap copies (even when they
      come from an external data file, which it otherwise maps), and keeps a second copy of
      the weights for the session's lifetime when the session is created from bytes or
      saves its optimised graph — so a large model that cannot share loads straight from its
      file. Without a compile cache (or off Linux), only weights in external data files that
      no kernel pre-packs (embedding tables, say) are shared: ORT maps them where they lie.

    Pre-packing is left on: turning it off (``session.disable_prepacking``) would keep
    external weights mapped, but made FP32 MatMul 1.7-2.6x slower at batch 4-32.

    ``load`` reads everything it needs: the session maps or copies the files then, so the
    version's directory may be removed once it returns (a mapped file stays readable after
    it is unlinked).
    """

    platform = "onnxruntime_onnx"

    def __init__(
        self, path: Path, settings: ModelSettings, compile_cache: CompileCache | None = None
    ) -> None:
        self.path = path
        self.settings = settings
        self.compile_cache = compile_cache
        self.compile_outcome: str | None = None  # after load: "hit", "miss", "bypass" or None
        self._session: ort.InferenceSession | None = None
        self._signature: Signature | None = None
        self._bytes = 0
        self._bytes_outputs: frozenset[str] = frozenset()

    def load(self) -> None:
        model_file = self.path / MODEL_FILE
        if not model_file.is_file():
            raise VersionFailed("missing_file", f"{model_file} does not exist")
        options = ort.SessionOptions()
        cfg = self.settings.onnx
        options.intra_op_num_threads = cfg.intra_op_num_threads
        options.inter_op_num_threads = cfg.inter_op_num_threads
        options.graph_optimization_level = _OPT_LEVELS[cfg.graph_optimization_level]
        options.log_severity_level = 3
        try:
            if self.compile_cache is not None:
                compiled = self.compile_cache.session(model_file, options, list(cfg.providers))
                session, self.compile_outcome = compiled.session, compiled.outcome
            else:
                session = ort.InferenceSession(
                    str(model_file), sess_options=options, providers=list(cfg.providers)
                )
            signature = Signature(
                tuple(_spec(a) for a in session.get_inputs()),
                tuple(_spec(a) for a in session.get_outputs()),
            )
        except VersionFailed:
            raise
        except Exception as exc:  # ORT raises several unrelated types for bad files
            raise VersionFailed(
                "load_error", f"onnxruntime could not load {model_file}: {exc}"
            ) from None
        self._session = session
        self.computes_on_cpu = session.get_providers() == ["CPUExecutionProvider"]
        self._signature = signature
        self._bytes = model_file.stat().st_size
        self._bytes_outputs = frozenset(t.name for t in signature.outputs if t.datatype == "BYTES")

    def predict(
        self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None
    ) -> dict[str, np.ndarray]:
        session = self._session
        if session is None:
            raise RuntimeError("predict() on an unloaded ONNX runtime")
        names = list(outputs) if outputs else [t.name for t in self.signature().outputs]
        feed = {k: _to_ort(v) for k, v in inputs.items()}
        results = session.run(names, feed)
        return {
            name: _from_ort(value, name in self._bytes_outputs)
            for name, value in zip(names, results, strict=True)
        }

    def unload(self) -> None:
        self._session = None
        gc.collect()

    def memory_bytes(self) -> int | None:
        return self._bytes or None


def _to_ort(array: np.ndarray) -> np.ndarray:
    """ORT string tensors hold UTF-8 text as ``str``; v2 BYTES arrive as ``bytes``."""
    if array.dtype != object or not array.size:
        return array
    flat = array.reshape(-1)
    text = np.empty(flat.size, dtype=object)
    for i, item in enumerate(flat):
        try:
            text[i] = item.decode("utf-8") if isinstance(item, bytes) else str(item)
        except UnicodeDecodeError:
            raise InvalidRequest(
                f"element {i} is not UTF-8; ONNX Runtime string tensors hold UTF-8 text"
            ) from None
    return text.reshape(array.shape)


def _from_ort(value: np.ndarray, is_bytes: bool) -> np.ndarray:
    if not (is_bytes and value.size):
        return value
    flat = value.reshape(-1)
    out = np.empty(flat.size, dtype=object)
    out[:] = [s.encode("utf-8") if isinstance(s, str) else s for s in flat]
    return out.reshape(value.shape)
