"""The adapter step: from a version directory (and model settings) to an unloaded Runtime."""

from __future__ import annotations

from pathlib import Path

from baton.errors import VersionFailed
from baton.runtimes.base import Runtime
from baton.settings import ModelSettings

__all__ = ["runtime_for"]


def runtime_for(path: Path, settings: ModelSettings, compile_cache=None) -> Runtime:
    """Pick the backend named in ``settings.backend``, else the one whose files are present;
    ``compile_cache`` (a :class:`baton.runtimes.compile_cache.CompileCache`) serves ONNX.

    Raises :class:`VersionFailed` (``no_model_file``) when no backend recognises the directory.
    """
    if settings.backend == "onnx" or (settings.backend is None and (path / "model.onnx").exists()):
        from baton.runtimes.onnx import OnnxRuntime

        return OnnxRuntime(path, settings, compile_cache)
    raise VersionFailed("no_model_file", f"no model file found in {path} (expected model.onnx)")
