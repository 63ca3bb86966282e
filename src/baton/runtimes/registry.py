"""The adapter step: from a version directory (and model settings) to an unloaded Runtime."""

from __future__ import annotations

from pathlib import Path

from baton.errors import VersionFailed
from baton.runtimes.base import Runtime
from baton.settings import ModelSettings

__all__ = ["runtime_for"]


#: Files that identify a backend, in the order they are looked for.
DETECT = (
    ("model.onnx", "onnx"),
    ("model.pt", "torchscript"),
    ("model.pt2", "torch_export"),
    ("weights.safetensors", "torch_weights"),
    ("weights.pt", "torch_weights"),
    ("saved_model.pb", "tensorflow"),
    ("model.pdmodel", "paddle"),
    ("model.json", "paddle"),
    ("model.engine", "tensorrt"),
)


def backend_of(path: Path, settings: ModelSettings) -> str:
    """The backend ``settings.backend`` names, else the one whose files are present."""
    if settings.backend is not None:
        return settings.backend
    if settings.python is not None:
        return "python"
    for name, backend in DETECT:
        if (path / name).exists():
            return backend
    raise VersionFailed(
        "no_model_file",
        f"no model file found in {path} (expected one of {sorted({n for n, _ in DETECT})}, "
        "or backend/python in model.yaml)",
    )


def runtime_for(
    path: Path,
    settings: ModelSettings,
    compile_cache=None,
    code_dirs: tuple[Path, ...] | None = None,
) -> Runtime:
    """The runtime for a version directory; ``compile_cache`` (a
    :class:`baton.runtimes.compile_cache.CompileCache`) serves ONNX; ``code_dirs`` are where
    user code named in model.yaml may be imported from (default: the version directory, then
    its model directory). Framework packages are imported on load, so a server without them
    starts fast and fails only those versions.

    Raises :class:`VersionFailed` (``no_model_file``) when no backend recognises the directory.
    """
    backend = backend_of(path, settings)
    code_dirs = code_dirs if code_dirs is not None else (path, path.parent)
    if backend == "onnx":
        from baton.runtimes.onnx import OnnxRuntime

        return OnnxRuntime(path, settings, compile_cache)
    if backend in ("torchscript", "torch_export", "torch_weights"):
        from baton.runtimes.pytorch import TorchRuntime

        return TorchRuntime(path, settings, backend, code_dirs)
    if backend == "tensorflow":
        from baton.runtimes.tf_savedmodel import TensorflowRuntime

        return TensorflowRuntime(path, settings)
    if backend == "paddle":
        from baton.runtimes.paddle_inference import PaddleRuntime

        return PaddleRuntime(path, settings)
    if backend == "python":
        from baton.runtimes.python import PythonRuntime

        return PythonRuntime(path, settings, code_dirs)
    if backend == "tensorrt":
        raise VersionFailed(
            "backend_unavailable",
            "TensorRT engines need an NVIDIA GPU and the 'tensorrt' package "
            "(pip install 'baton[tensorrt]'); this server has no TensorRT runtime",
        )
    raise VersionFailed("backend_unavailable", f"no runtime for the {backend} backend")
