"""TensorFlow SavedModel (``baton[tensorflow]``): a version is a SavedModel directory; the
served signature is ``tensorflow.signature`` in model.yaml (default ``serving_default``), and
its TensorSpecs become the model's metadata (unknown dimensions are -1). TF Serving's warm-up
file (``assets.extra/tf_serving_warmup_requests``) is used for warm-up when the version has no
``warmup/`` folder (see :mod:`baton.runtimes.tf_warmup`).

TensorFlow is imported on the first load, so a server without TensorFlow models never pays for
it; its thread pools are sized to one thread each then, as with the other backends.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from baton.errors import VersionFailed
from baton.runtimes.base import Runtime
from baton.runtimes.common import require
from baton.runtimes.tf_warmup import WARMUP_FILE, read_warmup_requests
from baton.settings import ModelSettings
from baton.types import Signature, TensorSpec, datatype_of

__all__ = ["TensorflowRuntime"]


def _spec(name: str, spec) -> TensorSpec:
    shape = tuple(-1 if d is None else int(d) for d in spec.shape.as_list())
    return TensorSpec(name, datatype_of(np.empty(0, spec.dtype.as_numpy_dtype)), shape)


def _configure_threads(tf) -> None:
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised by an earlier load


class TensorflowRuntime(Runtime):
    platform = "tensorflow_savedmodel"

    def __init__(self, path: Path, settings: ModelSettings) -> None:
        self.path, self.settings = path, settings
        self._model = None
        self._fn = None
        self._signature: Signature | None = None

    def load(self) -> None:
        tf = require("tensorflow", "tensorflow", "TensorFlow")
        _configure_threads(tf)
        wanted = self.settings.tensorflow.signature
        try:
            model = tf.saved_model.load(str(self.path))
        except Exception as exc:
            raise VersionFailed(
                "load_error", f"TensorFlow could not load {self.path}: {exc}"
            ) from None
        if wanted not in model.signatures:
            raise VersionFailed(
                "bad_config",
                f"the SavedModel has no signature {wanted!r}; it has {sorted(model.signatures)}",
            )
        fn = model.signatures[wanted]
        _, kwargs = fn.structured_input_signature
        self._signature = Signature(
            tuple(_spec(n, s) for n, s in sorted(kwargs.items())),
            tuple(_spec(n, s) for n, s in sorted(fn.structured_outputs.items())),
        )
        self._model, self._fn = model, fn

    def warmup_requests(self) -> list[dict[str, np.ndarray]] | None:
        import tensorflow as tf

        try:
            return read_warmup_requests(self.path, tf)
        except Exception as exc:
            raise VersionFailed("bad_warmup_file", f"{WARMUP_FILE}: {exc}") from None

    def predict(
        self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None
    ) -> dict[str, np.ndarray]:
        import tensorflow as tf

        result = self._fn(**{name: tf.constant(value) for name, value in inputs.items()})
        names = outputs if outputs is not None else [t.name for t in self.signature().outputs]
        return {n: result[n].numpy() for n in names}

    def unload(self) -> None:
        self._model = self._fn = None
        gc.collect()
