"""Verify a version's files before load: nothing unverified reaches a runtime.

In order, each failure a :class:`VersionFailed` whose reason names it:

1. the files are still the ones the source declared complete (``files_changed``,
   ``missing_file``), so a directory modified between discovery and load is never loaded;
2. the manifest (``baton-manifest.json``) is present when required (``missing_manifest``) and
   parses (``bad_manifest``);
3. its signature is by a trusted key when signatures are required (``unsigned``,
   ``untrusted_key``), and a trusted key's signature matches the manifest (``bad_signature``);
4. the directory holds exactly the files the manifest lists (``missing_file``,
   ``unexpected_file``), each of the listed size (``size_mismatch``) and SHA-256
   (``hash_mismatch``);
5. a delta version's base is there and unaltered (``delta_base_missing``,
   ``delta_base_altered``), and the model rebuilt from both has the declared SHA-256
   (``delta_mismatch``) — see :mod:`baton.artifacts.delta`.

The server's settings set the floor (``require_manifest``, ``require_signature``, trusted
keys); a model's ``model.yaml`` can only raise it.
"""

from __future__ import annotations

from pathlib import Path

from baton.artifacts.delta import rebuild
from baton.artifacts.files import VersionFiles, fingerprint
from baton.artifacts.manifest import MANIFEST, hash_file, listed_files, read_manifest
from baton.artifacts.signing import TrustStore
from baton.errors import VersionFailed
from baton.settings import ModelSettings

__all__ = ["Verifier", "check_files", "verify_version"]


def verify_version(files: VersionFiles, settings: ModelSettings | None = None) -> dict:
    """Verify with no server-wide requirements or trusted keys (what tests and tools use)."""
    return Verifier()(files, settings or ModelSettings())


class Verifier:
    def __init__(
        self,
        trust: TrustStore | None = None,
        require_manifest: bool = False,
        require_signature: bool = False,
    ) -> None:
        self.trust = trust or TrustStore()
        self.require_manifest = require_manifest
        self.require_signature = require_signature

    def __call__(self, files: VersionFiles, settings: ModelSettings) -> dict:
        """Raise :class:`VersionFailed` unless the version may be loaded; returns what was
        established (``manifest``: bool, ``signed_by``: key id or ``None``, and for a delta
        ``load_from``: a temporary directory with the rebuilt model, which the caller removes
        once loaded). Blocking."""
        now = fingerprint(files.path)
        if now is None:
            raise VersionFailed("missing_file", f"{files.path} is empty or gone")
        if now != files.fingerprint:
            raise VersionFailed("files_changed", f"files in {files.path} changed after discovery")
        require_signature = self.require_signature or settings.require_signature
        manifest = read_manifest(files.path)
        if manifest is None:
            if require_signature:
                raise VersionFailed("unsigned", f"no {MANIFEST}, so nothing is signed; a "
                                    "signature is required")  # fmt: skip
            if self.require_manifest or settings.require_manifest:
                raise VersionFailed("missing_manifest", f"no {MANIFEST}; a manifest is required")
            return {"manifest": False, "signed_by": None}
        signed_by = self.trust.check(manifest, require_signature)
        check_files(files.path, manifest.files)
        facts = {"manifest": True, "signed_by": signed_by}
        delta = manifest.body.get("delta")
        if delta:
            facts["load_from"] = rebuild(files.path, delta, lambda d, m: check_files(d, m.files))
        return facts


def check_files(directory: Path, declared: dict) -> None:
    """Exactly the ``declared`` files (name → FileEntry), each of its size and SHA-256."""
    present = set(listed_files(directory))
    missing = sorted(set(declared) - present)
    if missing:
        raise VersionFailed("missing_file", f"{missing[0]} is listed in the manifest but missing")
    extra = sorted(present - set(declared))
    if extra:
        raise VersionFailed("unexpected_file", f"{extra[0]} is not listed in the manifest")
    for name, entry in sorted(declared.items(), key=lambda item: item[1].size):
        path = directory / name
        size = path.stat().st_size
        if size != entry.size:
            raise VersionFailed(
                "size_mismatch",
                f"{name} is {size} bytes, the manifest says {entry.size} (truncated or altered)",
            )
    for name, entry in declared.items():
        if hash_file(directory / name).sha256 != entry.sha256:
            raise VersionFailed(
                "hash_mismatch", f"{name} does not match its SHA-256 in the manifest (altered)"
            )
