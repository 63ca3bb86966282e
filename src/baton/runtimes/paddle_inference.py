"""PaddlePaddle Inference (``baton[paddle]``): versions are ``paddle.jit.save`` outputs
(``model.json`` or ``model.pdmodel``, with ``model.pdiparams``), run through
``paddle.inference.Config`` / ``create_predictor`` with its zero-copy tensor handles.

Input and output names come from the predictor; tensors declared in model.yaml (``inputs``,
``outputs``) rename them by position and give their datatypes and shapes, which PIR programs
do not report before a run. A predictor is not thread-safe, so each runtime keeps a small pool
of clones and lends one per prediction.
"""

from __future__ import annotations

import gc
import queue
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from baton.errors import VersionFailed
from baton.runtimes.base import Runtime
from baton.runtimes.common import require
from baton.settings import ModelSettings
from baton.types import Signature, TensorSpec

__all__ = ["PaddleRuntime"]

_TYPES = {
    "FLOAT32": "FP32", "FLOAT64": "FP64", "FLOAT16": "FP16", "INT64": "INT64", "INT32": "INT32",
    "INT8": "INT8", "UINT8": "UINT8", "BOOL": "BOOL",
}  # fmt: skip
POOL = 4  # clones lent to concurrent predictions


class PaddleRuntime(Runtime):
    platform = "paddle_inference"

    def __init__(self, path: Path, settings: ModelSettings) -> None:
        self.path, self.settings = path, settings
        self._pool: queue.Queue | None = None
        self._signature: Signature | None = None
        self._names: dict[str, str] = {}  # our tensor name -> the predictor's

    def load(self) -> None:
        inference = require("paddle.inference", "paddle", "PaddlePaddle")
        program = next((self.path / n for n in ("model.json", "model.pdmodel")
                        if (self.path / n).is_file()), None)  # fmt: skip
        params = self.path / "model.pdiparams"
        if program is None or not params.is_file():
            raise VersionFailed(
                "missing_file", f"{self.path} needs model.json (or .pdmodel) and model.pdiparams"
            )
        try:
            config = inference.Config(str(program), str(params))
            config.disable_gpu()
            config.disable_glog_info()
            config.set_cpu_math_library_num_threads(1)
            predictor = inference.create_predictor(config)
            signature = self._signature_of(predictor)
            pool: queue.Queue = queue.Queue()
            pool.put(predictor)
            for _ in range(POOL - 1):
                pool.put(predictor.clone())
        except VersionFailed:
            raise
        except Exception as exc:
            raise VersionFailed("load_error", f"Paddle could not load {self.path}: {exc}") from None
        self._pool, self._signature = pool, signature

    def _signature_of(self, predictor) -> Signature:
        specs = []
        for names, declared, handle in (
            (
                predictor.get_input_names(),
                self.settings.inputs,
                predictor.get_input_handle,
            ),
            (
                predictor.get_output_names(),
                self.settings.outputs,
                predictor.get_output_handle,
            ),
        ):
            tensors = []
            for i, native in enumerate(names):
                d = declared[i] if i < len(declared) else None
                name = d.name if d is not None else native
                native_type = str(handle(native).type()).rsplit(".", 1)[-1]
                datatype = d.datatype if d and d.datatype else _TYPES.get(native_type, "FP32")
                shape = (
                    tuple(d.shape)
                    if d and d.shape is not None
                    else tuple(s if s > 0 else -1 for s in handle(native).shape())
                )
                self._names[name] = native
                tensors.append(TensorSpec(name, datatype, shape))
            specs.append(tuple(tensors))
        return Signature(specs[0], specs[1])

    def predict(
        self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None
    ) -> dict[str, np.ndarray]:
        predictor = self._pool.get()
        try:
            for spec in self.signature().inputs:
                predictor.get_input_handle(self._names[spec.name]).copy_from_cpu(
                    np.ascontiguousarray(inputs[spec.name])
                )
            predictor.run()
            names = outputs if outputs is not None else [t.name for t in self.signature().outputs]
            return {n: predictor.get_output_handle(self._names[n]).copy_to_cpu() for n in names}
        finally:
            self._pool.put(predictor)

    def unload(self) -> None:
        self._pool = None
        gc.collect()
