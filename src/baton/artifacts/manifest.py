"""The version manifest, ``baton-manifest.json``: what a published version is made of.

Written last by :func:`baton.artifacts.publish.publish`, so a version directory with a manifest
has all its files. The document::

    {"format": "baton-manifest/1",
     "body": {"model": "fraud", "version": 7, "framework": "onnx",
              "created": "2026-11-22T10:00:00Z", "description": "...", "parent": 6,
              "labels": ["candidate"],
              "files": {"model.onnx": {"size": 1234, "sha256": "ab12..."}},
              "signature": {"inputs": [...], "outputs": [...]},
              "delta": null},
     "signatures": [{"algorithm": "ed25519", "key_id": "3f2a...", "value": "<base64>"}]}

Signatures cover :func:`canonical_body`: the body as JSON with sorted keys and no whitespace,
so re-serialising a manifest cannot change what was signed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from baton.errors import VersionFailed

__all__ = [
    "FORMAT",
    "MANIFEST",
    "FileEntry",
    "Manifest",
    "canonical_body",
    "copy_hashed",
    "hash_file",
    "listed_files",
    "read_manifest",
    "write_manifest",
]

MANIFEST = "baton-manifest.json"
FORMAT = "baton-manifest/1"
CHUNK = 4 * 2**20


@dataclass(frozen=True, slots=True)
class FileEntry:
    size: int
    sha256: str


@dataclass
class Manifest:
    body: dict
    signatures: list[dict] = field(default_factory=list)
    digest: str = ""  # SHA-256 of the manifest file as read: which bytes a version is

    @property
    def files(self) -> dict[str, FileEntry]:
        return {
            name: FileEntry(int(entry["size"]), str(entry["sha256"]))
            for name, entry in self.body["files"].items()
        }

    def to_json(self) -> dict:
        return {"format": FORMAT, "body": self.body, "signatures": self.signatures}


def canonical_body(body: dict) -> bytes:
    """The exact bytes a signature covers."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def copy_hashed(src: Path, dst: Path, progress: Callable[[int], None] | None = None
                ) -> FileEntry:  # fmt: skip
    """Copy ``src`` to ``dst`` (flushed to disk) in one read pass; size and SHA-256 of the bytes
    read, which are exactly the bytes written."""
    digest, size = hashlib.sha256(), 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb", buffering=0) as fin, open(dst, "wb", buffering=0) as fout:
        while chunk := fin.read(CHUNK):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
            if progress is not None:
                progress(len(chunk))
        os.fsync(fout.fileno())
    return FileEntry(size, digest.hexdigest())


def hash_file(path: Path, progress: Callable[[int], None] | None = None) -> FileEntry:
    """Size and SHA-256 of a file, read in 4 MiB chunks (``progress`` gets each chunk's size)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if progress is not None:
                progress(len(chunk))
    return FileEntry(size, digest.hexdigest())


def listed_files(directory: Path) -> list[str]:
    """Every file under ``directory`` except the manifest — hidden ones included, so nothing
    can ride along unlisted — as sorted POSIX paths."""
    names = []
    for root, _, files in os.walk(directory):
        for name in files:
            rel = Path(root, name).relative_to(directory).as_posix()
            if rel != MANIFEST:
                names.append(rel)
    return sorted(names)


def read_manifest(directory: Path) -> Manifest | None:
    """The version's manifest, ``None`` if it has none; ``VersionFailed(bad_manifest)`` if it
    cannot be parsed or is not a baton manifest."""
    path = directory / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = orjson.loads(raw)
        if doc.get("format") != FORMAT:
            raise ValueError(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
        body, signatures = doc["body"], doc.get("signatures") or []
        if not isinstance(body, dict) or not isinstance(body.get("files"), dict):
            raise ValueError("body.files must be a mapping of file name to size and sha256")
        manifest = Manifest(body, list(signatures), hashlib.sha256(raw).hexdigest())
        manifest.files  # noqa: B018 - validates every entry
    except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VersionFailed("bad_manifest", f"{path} is not a valid manifest: {exc}") from None
    return manifest


def write_manifest(directory: Path, manifest: Manifest) -> Path:
    """Write the manifest into ``directory`` (flushed to disk before returning)."""
    path = directory / MANIFEST
    data = orjson.dumps(manifest.to_json(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return path
