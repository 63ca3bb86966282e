"""Delta versions of ONNX models: only the initializers (weights) that changed.

``baton publish --delta-from N`` stores ``delta.onnx``: the new model's graph with every
initializer that is byte-identical to version N's left out. The manifest's ``delta`` entry
names the base version, pins the base's manifest by SHA-256, lists the initializers in order
and declares the SHA-256 of the rebuilt model::

    "delta": {"format": "onnx-initializers/1", "base": 6, "base_manifest_sha256": "...",
              "file": "delta.onnx", "initializers": ["w1", "b1", "head.w"],
              "reused": ["w1", "b1"], "result_sha256": "..."}

Before loading, :func:`rebuild` checks the base (present, its manifest the pinned one, its files
matching that manifest), puts the reused initializers back in their places, and refuses the
result unless its SHA-256 is the declared one. Hashes are over ``ModelProto.SerializeToString()``
(the publisher hashes the model it parsed, not the file it was given), so they match whenever
publisher and server serialise protobufs alike. Bases must be full versions, not deltas.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx

from baton.artifacts.manifest import MANIFEST, read_manifest
from baton.errors import VersionFailed

__all__ = ["FORMAT", "make_delta", "rebuild"]

FORMAT = "onnx-initializers/1"
MODEL = "model.onnx"
DELTA = "delta.onnx"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_delta(new_model: Path, base_dir: Path, base: int, out: Path) -> dict:
    """Write the delta of ``new_model`` against the full version in ``base_dir`` to ``out`` and
    return the manifest's ``delta`` entry. Raises ``ValueError`` for a base that cannot serve."""
    if not base_dir.is_dir():
        raise ValueError(f"version {base} does not exist")
    manifest = read_manifest(base_dir)
    if manifest is None:
        raise ValueError(f"version {base} has no manifest; publish deltas against published bases")
    if manifest.body.get("delta") or not (base_dir / MODEL).is_file():
        raise ValueError(f"version {base} is not a full ONNX version")
    model = onnx.load(str(new_model))
    base_weights = {
        t.name: t.SerializeToString() for t in onnx.load(str(base_dir / MODEL)).graph.initializer
    }
    result = model.SerializeToString()
    order = [t.name for t in model.graph.initializer]
    reused = [
        t.name for t in model.graph.initializer if base_weights.get(t.name) == t.SerializeToString()
    ]
    keep = [t for t in model.graph.initializer if t.name not in set(reused)]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    out.write_bytes(model.SerializeToString())
    return {
        "format": FORMAT,
        "base": base,
        "base_manifest_sha256": _sha256((base_dir / MANIFEST).read_bytes()),
        "file": DELTA,
        "initializers": order,
        "reused": reused,
        "result_sha256": _sha256(result),
    }


def rebuild(version_dir: Path, delta: dict, check_base, into: Path) -> None:
    """Rebuild the full model of the delta version at ``version_dir`` into ``into`` (the
    verified copy of its files, which holds the delta file: it is replaced by ``model.onnx``).
    ``check_base(base_dir, manifest)`` verifies the base's files against its manifest; the
    rebuilt model must have the declared SHA-256. Raises ``VersionFailed``."""
    if delta.get("format") != FORMAT:
        raise VersionFailed("bad_manifest", f"unknown delta format {delta.get('format')!r}")
    base = int(delta["base"])
    base_dir = version_dir.parent / str(base)
    base_manifest = base_dir / MANIFEST
    if not base_manifest.is_file() or not (base_dir / MODEL).is_file():
        raise VersionFailed("delta_base_missing", f"base version {base} of this delta is missing")
    if _sha256(base_manifest.read_bytes()) != delta["base_manifest_sha256"]:
        raise VersionFailed(
            "delta_base_altered",
            f"base version {base}'s manifest is not the one this delta was made against",
        )
    try:
        check_base(base_dir, read_manifest(base_dir))
    except VersionFailed as exc:
        raise VersionFailed("delta_base_altered", f"base version {base}: {exc}") from None
    model = onnx.load(str(into / delta["file"]))
    weights = {t.name: t for t in model.graph.initializer}
    weights.update(
        {
            t.name: t
            for t in onnx.load(str(base_dir / MODEL)).graph.initializer
            if t.name in set(delta["reused"])
        }
    )
    missing = [n for n in delta["initializers"] if n not in weights]
    if missing:
        raise VersionFailed(
            "delta_mismatch", f"initializer {missing[0]} is in neither the delta nor its base"
        )
    del model.graph.initializer[:]
    model.graph.initializer.extend(weights[n] for n in delta["initializers"])
    data = model.SerializeToString()
    if _sha256(data) != delta["result_sha256"]:
        raise VersionFailed(
            "delta_mismatch",
            "the model rebuilt from the delta and its base does not have the declared SHA-256",
        )
    (into / MODEL).write_bytes(data)
    (into / delta["file"]).unlink()
