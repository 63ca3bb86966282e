"""What several backends share: signatures declared in ``model.yaml``, user classes named there,
and optional framework imports that fail with the package to install."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
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
    directory, then the model directory). Raises ``VersionFailed(bad_config)``."""
    target, _, name = spec.partition(":")
    if not name:
        raise VersionFailed("bad_config", f"{spec!r} must look like 'module:Class'")
    try:
        if target.endswith(".py"):
            file = next((d / target for d in search if (d / target).is_file()), None)
            if file is None:
                raise ImportError(f"{target} not found in {[str(d) for d in search]}")
            module_name = f"baton_user_{abs(hash(str(file.resolve())))}"
            loader_spec = importlib.util.spec_from_file_location(module_name, file)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
        return getattr(module, name)
    except Exception as exc:
        raise VersionFailed(
            "bad_config", f"cannot import {spec}: {type(exc).__name__}: {exc}"
        ) from None
