"""Warm-up: run a freshly loaded version before it may take traffic, and check its outputs.

Requests come from ``<version>/warmup/*.json`` (Open Inference Protocol JSON requests, run in
file-name order) when that folder exists, else from the model's own format when it ships some
(:meth:`baton.runtimes.base.Runtime.warmup_requests`, e.g. TF Serving's warm-up file), otherwise
they are synthesised from the signature (dynamic dimensions become 1). Every output must be
finite; a warm-up that raises or produces NaN/Inf fails the version with reason
``warmup_failed`` / ``non_finite_output``.

Warm-up also estimates what one prediction costs once the model is warm (the fastest run); a
model whose runs take under ``QUICK`` seconds gets up to ``EXTRA_RUNS`` more runs of the first
request for that, since a first run is often ten times slower than the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from baton.errors import BatonError, VersionFailed
from baton.runtimes.base import Runtime
from baton.serving.codec import decode_json
from baton.settings import WarmupSettings
from baton.types import Signature, numpy_dtype

__all__ = ["Warmup", "load_warmup_requests", "run_warmup", "synthesize_inputs"]

WARMUP_DIR = "warmup"
QUICK = 1e-3
EXTRA_RUNS = 3


@dataclass(frozen=True, slots=True)
class Warmup:
    runs: int = 0  # predictions made
    predict_seconds: float | None = None  # the fastest one; None when warm-up is disabled
    source: str = "none"  # "files" (warmup/), "model" (its own format), "synthesized"


def synthesize_inputs(signature: Signature) -> dict[str, np.ndarray]:
    """One small, deterministic request that fits the signature."""
    rng = np.random.default_rng(0)
    inputs = {}
    for spec in signature.inputs:
        shape = tuple(1 if d < 0 else d for d in spec.shape)
        if spec.datatype == "BYTES":
            array = np.full(shape, b"warmup", dtype=object)
        elif spec.datatype in ("FP16", "FP32", "FP64"):
            array = rng.standard_normal(shape).astype(numpy_dtype(spec.datatype))
        else:
            array = np.ones(shape, dtype=numpy_dtype(spec.datatype))
        inputs[spec.name] = array
    return inputs


def load_warmup_requests(version_dir: Path) -> list[dict[str, np.ndarray]] | None:
    """Requests from ``warmup/*.json``, or ``None`` when the version ships none."""
    folder = version_dir / WARMUP_DIR
    if not folder.is_dir():
        return None
    requests = []
    for file in sorted(folder.glob("*.json")):
        try:
            body = orjson.loads(file.read_bytes())
            requests.append(
                {
                    t["name"]: decode_json(t["name"], t["datatype"], t["shape"], t["data"])
                    for t in body["inputs"]
                }
            )
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, BatonError) as exc:
            raise VersionFailed("bad_warmup_file", f"warm-up request {file.name}: {exc}") from None
    return requests


def run_warmup(
    runtime: Runtime, signature: Signature, version_dir: Path, settings: WarmupSettings
) -> Warmup:
    """Run the warm-up; returns how many predictions it made and the fastest. Blocking."""
    if not settings.enabled:
        return Warmup()
    source, requests = "files", load_warmup_requests(version_dir)
    if not requests:
        source, requests = "model", runtime.warmup_requests()
    if not requests:
        source, requests = "synthesized", [synthesize_inputs(signature)]
    times = [
        _checked_run(runtime, inputs) for _ in range(settings.iterations) for inputs in requests
    ]
    for _ in range(EXTRA_RUNS):
        if times[-1] >= QUICK:
            break
        times.append(_checked_run(runtime, requests[0]))
    return Warmup(len(times), min(times), source)


def _checked_run(runtime: Runtime, inputs: dict[str, np.ndarray]) -> float:
    """Seconds one prediction took; raises VersionFailed if it fails or is not finite."""
    started = time.perf_counter()
    try:
        outputs = runtime.predict(inputs, None)
    except Exception as exc:
        raise VersionFailed("warmup_failed", f"warm-up prediction failed: {exc}") from None
    seconds = time.perf_counter() - started
    for name, value in outputs.items():
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            raise VersionFailed(
                "non_finite_output", f"warm-up output '{name}' is not finite (NaN/Inf)"
            )
    return seconds
