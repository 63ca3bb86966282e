"""What several backends share: signatures declared in ``model.yaml``, user classes named there,
and optional framework imports that fail with the package to install."""

from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path, PurePosixPath
from types import ModuleType

from baton.errors import VersionFailed
from baton.settings import ModelSettings
from baton.types import Signature, TensorSpec, numpy_dtype

__all__ = ["declared_signature", "import_class", "require"]


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import an optional framework, or fail the version naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise VersionFailed(
            "backend_unavailable",
            f"{what} needs the '{module}' package: pip install 'baton[{extra}]' ({exc})",
        ) from None


def declared_signature(settings: ModelSettings, what: str) -> Signature:
    """The signature from ``inputs``/``outputs`` in model.yaml, for models that carry none; each
    tensor needs a name, a datatype and a shape."""
    specs = []
    for kind, declared in (("inputs", settings.inputs), ("outputs", settings.outputs)):
        if not declared:
            raise VersionFailed(
                "bad_config", f"{what} models need their {kind} declared in model.yaml, e.g. "
                f"{kind}: [{{name: x, datatype: FP32, shape: [-1, 4]}}]",
            )  # fmt: skip
        tensors = []
        for t in declared:
            if t.datatype is None or t.shape is None:
                raise VersionFailed("bad_config", f"{kind} '{t.name}' needs a datatype and a shape")
            try:
                numpy_dtype(t.datatype)
            except Exception:
                raise VersionFailed("bad_config", f"{kind} '{t.name}': unknown datatype "
                                    f"{t.datatype!r}") from None  # fmt: skip
            tensors.append(TensorSpec(t.name, t.datatype, tuple(t.shape)))
        specs.append(tuple(tensors))
    return Signature(specs[0], specs[1])


def import_class(spec: str, search: list[Path]) -> type:
    """``package.module:Class``, or ``file.py:Class`` found in one of ``search`` (the version
    directory, then — for an unverified version — the model directory). Raises
    ``VersionFailed(bad_config)``.

    A file path never leaves its directory: absolute paths, ``..`` and symbolic links out are
    refused. The file's bytes are read once and executed (no bytecode is written beside it, so
    a version directory is never changed by loading it)."""
    target, _, name = spec.partition(":")
    if not name or not target:
        raise VersionFailed("bad_config", f"{spec!r} must look like 'module:Class'")
    try:
        if target.endswith(".py"):
            module = _module_from_file(_contained(target, search), spec)
        else:
            module = importlib.import_module(target)
        return getattr(module, name)
    except VersionFailed:
        raise
    except Exception as exc:
        raise VersionFailed(
            "bad_config", f"cannot import {spec}: {type(exc).__name__}: {exc}"
        ) from None


def _contained(target: str, search: list[Path]) -> Path:
    relative = PurePosixPath(target)
    if relative.is_absolute() or ".." in relative.parts:
        raise VersionFailed(
            "bad_config", f"{target!r} must be a path inside the version (no '/…' or '..')"
        )
    for directory in search:
        file = directory / relative
        if file.is_file():
            if not file.resolve().is_relative_to(directory.resolve()):
                raise VersionFailed("bad_config", f"{target!r} leads out of {directory}")
            return file
    where = " or ".join(str(d) for d in search)
    raise VersionFailed("bad_config", f"{target} not found in {where}")


def _module_from_file(file: Path, spec: str) -> ModuleType:
    source = file.read_bytes()
    name = f"baton_user_{hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:16]}"
    module = ModuleType(name)
    module.__file__ = str(file)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up by name
    try:
        exec(compile(source, str(file), "exec"), module.__dict__)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
