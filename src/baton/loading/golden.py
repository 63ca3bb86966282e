"""Golden set: known input → expected output pairs a version must reproduce before any traffic.

Each ``<version>/golden/*.json`` holds an Open Inference Protocol request plus the outputs it
must produce, and optionally its own tolerance::

    {"inputs":  [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}],
     "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 4], "data": [2, 3, 4, 5]}],
     "tolerance": {"atol": 1e-5, "rtol": 1e-4}}

Floating-point outputs must match within ``atol + rtol * |expected|`` (defaults from
``model.yaml``'s ``golden``); everything else must match exactly. A mismatch fails the version
with reason ``golden_mismatch`` naming the file, the output and the largest difference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from baton.errors import BatonError, VersionFailed
from baton.runtimes.base import Runtime
from baton.serving.codec import decode_json
from baton.settings import GoldenSettings

__all__ = ["GOLDEN_DIR", "run_golden"]

GOLDEN_DIR = "golden"


def _tensors(items: object, what: str) -> dict[str, np.ndarray]:
    if not isinstance(items, list):
        raise ValueError(f"'{what}' must be a list of tensors")
    return {t["name"]: decode_json(t["name"], t["datatype"], t["shape"], t["data"]) for t in items}


def run_golden(runtime: Runtime, version_dir: Path, settings: GoldenSettings) -> int:
    """Check every golden case; returns how many were checked. Blocking."""
    folder = version_dir / GOLDEN_DIR
    if not folder.is_dir():
        return 0
    cases = sorted(folder.glob("*.json"))
    for file in cases:
        try:
            doc = orjson.loads(file.read_bytes())
            inputs = _tensors(doc["inputs"], "inputs")
            expected = _tensors(doc["outputs"], "outputs")
            tol = {"atol": settings.atol, "rtol": settings.rtol, **doc.get("tolerance", {})}
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError,
                BatonError) as exc:  # fmt: skip
            raise VersionFailed("bad_golden_file", f"golden case {file.name}: {exc}") from None
        try:
            actual = runtime.predict(inputs, list(expected))
        except Exception as exc:
            raise VersionFailed("golden_mismatch", f"golden case {file.name}: {exc}") from None
        for name, want in expected.items():
            got = actual.get(name)
            problem = _difference(got, want, tol["atol"], tol["rtol"])
            if problem:
                raise VersionFailed(
                    "golden_mismatch", f"golden case {file.name}: output '{name}' {problem}"
                )
    return len(cases)


def _difference(got: np.ndarray | None, want: np.ndarray, atol: float, rtol: float) -> str | None:
    if got is None:
        return "is missing"
    if got.shape != want.shape:
        return f"has shape {list(got.shape)}, expected {list(want.shape)}"
    if want.dtype.kind == "f" and got.dtype.kind == "f":
        g, w = got.astype(np.float64), want.astype(np.float64)
        if not np.allclose(g, w, atol=atol, rtol=rtol, equal_nan=True):
            worst = float(np.nanmax(np.abs(g - w)))
            return f"differs by up to {worst:.6g} (atol {atol:g}, rtol {rtol:g})"
        return None
    if not np.array_equal(got, want):
        return "differs from the expected values"
    return None
