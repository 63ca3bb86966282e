"""A custom Python runtime: a user class named in model.yaml, for pre/post-processing or models
no backend covers::

    python: {handler: "handler.py:Handler", kwargs: {threshold: 0.5}}

``handler.py`` lives in the version directory or beside model.yaml (or give an importable
``package.module:Class``). The class is built with ``kwargs`` and must offer::

    def load(self, path: pathlib.Path) -> None           # the version directory
    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]
    def unload(self) -> None
    def signature(self) -> dict   # optional: {"inputs": [{"name", "datatype", "shape"}], ...}

Without ``signature()``, inputs and outputs are declared in model.yaml. ``predict`` is called
from several threads at once, so it must be thread-safe.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from baton.errors import VersionFailed
from baton.runtimes.base import Runtime
from baton.runtimes.common import declared_signature, import_class
from baton.settings import ModelSettings
from baton.types import Signature, TensorSpec

__all__ = ["PythonRuntime"]


class PythonRuntime(Runtime):
    platform = "python"

    def __init__(
        self, path: Path, settings: ModelSettings, code_dirs: tuple[Path, ...] | None = None
    ) -> None:
        self.path, self.settings = path, settings
        self.code_dirs = code_dirs if code_dirs is not None else (path, path.parent)
        self._handler = None
        self._signature: Signature | None = None

    def load(self) -> None:
        cfg = self.settings.python
        if cfg is None:
            raise VersionFailed(
                "bad_config", "the python backend needs python.handler in model.yaml"
            )
        cls = import_class(cfg.handler, list(self.code_dirs))
        try:
            handler = cls(**cfg.kwargs)
            handler.load(self.path)
            if hasattr(handler, "signature"):
                doc = handler.signature()
                signature = Signature(
                    tuple(
                        TensorSpec(t["name"], t["datatype"], tuple(t["shape"]))
                        for t in doc["inputs"]
                    ),
                    tuple(
                        TensorSpec(t["name"], t["datatype"], tuple(t["shape"]))
                        for t in doc["outputs"]
                    ),
                )
            else:
                signature = declared_signature(self.settings, "Custom Python")
        except VersionFailed:
            raise
        except Exception as exc:
            raise VersionFailed(
                "load_error", f"{cfg.handler} failed to load: {type(exc).__name__}: {exc}"
            ) from None
        self._handler, self._signature = handler, signature

    def predict(
        self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None
    ) -> dict[str, np.ndarray]:
        result = self._handler.predict(inputs)
        names = outputs if outputs is not None else [t.name for t in self.signature().outputs]
        missing = [n for n in names if n not in result]
        if missing:
            raise RuntimeError(f"the handler returned no {missing}")
        return {n: np.asarray(result[n]) for n in names}

    def unload(self) -> None:
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.unload()
        gc.collect()
