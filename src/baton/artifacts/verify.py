"""Verify a version's files before load: nothing unverified reaches a runtime.

In order, each failure a :class:`VersionFailed` whose reason names it:

1. the files are still the ones the source declared complete (``files_changed``,
   ``missing_file``), so a directory modified between discovery and load is never loaded;
2. the manifest (``baton-manifest.json``) is present when required (``missing_manifest``) and
   parses (``bad_manifest``);
3. its signature is by a trusted key when signatures are required (``unsigned``,
   ``untrusted_key``), and a trusted key's signature matches the manifest (``bad_signature``);
4. the settings in model.yaml that decide which code runs (backend, handler, module, their
   arguments) are the ones the manifest records (``unsigned_config``) — always when the
   manifest records them, and under ``require_signature`` also when it does not (then
   model.yaml may name no code);
5. the directory holds exactly the files the manifest lists, hidden ones included
   (``missing_file``, ``unexpected_file``), each of the listed size (``size_mismatch``) and
   SHA-256 (``hash_mismatch``);
6. a delta version's base is there and unaltered (``delta_base_missing``,
   ``delta_base_altered``), and the model rebuilt from both has the declared SHA-256
   (``delta_mismatch``) — see :mod:`baton.artifacts.delta`.

What is loaded is what was verified: a version with a manifest is copied, file by file, into a
private directory (mode 0700) while it is hashed — one read of each file — and the runtime loads
that copy (``load_from`` in the result; the caller removes it after the load). Changing the
original after its hash was taken changes nothing that runs.

The server's settings set the floor (``require_manifest``, ``require_signature``, trusted
keys); a model's ``model.yaml`` can only raise it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from baton.artifacts.delta import rebuild
from baton.artifacts.files import VersionFiles, fingerprint
from baton.artifacts.manifest import (
    MANIFEST,
    FileEntry,
    Manifest,
    copy_hashed,
    hash_file,
    listed_files,
    read_manifest,
)
from baton.artifacts.signing import TrustStore
from baton.errors import VersionFailed
from baton.settings import ModelSettings
from baton.tempdirs import owned_temp_dir, remove_stale

__all__ = [
    "SNAPSHOT_PREFIX",
    "Verifier",
    "check_code",
    "check_files",
    "remove_stale_snapshots",
    "verify_version",
]

SNAPSHOT_PREFIX = "baton-verified-"


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
        established: ``manifest`` (bool), ``signed_by`` (key id or ``None``), ``delta``
        (rebuilt from a delta), ``digest`` (the manifest's SHA-256, ``None`` without one), and
        with a manifest ``load_from``: the private verified copy
        to load (a delta's full model rebuilt in it), which the caller removes once loaded.
        Blocking."""
        now = fingerprint(files.path)
        if now is None:
            raise VersionFailed("missing_file", f"{files.path} is empty or gone")
        if files.fetch is None and now != files.fingerprint:  # a fetched copy is ours
            raise VersionFailed("files_changed", f"files in {files.path} changed after discovery")
        require_signature = self.require_signature or settings.require_signature
        manifest = read_manifest(files.path)
        if manifest is not None and files.digest is not None and manifest.digest != files.digest:
            raise VersionFailed("files_changed", "the manifest is not the one the source offered")
        if manifest is None:
            if require_signature:
                raise VersionFailed("unsigned", f"no {MANIFEST}, so nothing is signed; a "
                                    "signature is required")  # fmt: skip
            if self.require_manifest or settings.require_manifest:
                raise VersionFailed("missing_manifest", f"no {MANIFEST}; a manifest is required")
            return {"manifest": False, "signed_by": None, "delta": False, "digest": None}
        signed_by = self.trust.check(manifest, require_signature)
        check_code(manifest, settings, require_signature)
        snapshot = verified_copy(files.path, manifest.files)
        try:
            delta = manifest.body.get("delta")
            if delta:
                rebuild(files.path, delta, lambda d, m: check_files(d, m.files), snapshot)
        except BaseException:
            shutil.rmtree(snapshot, ignore_errors=True)
            raise
        return {"manifest": True, "signed_by": signed_by, "delta": bool(delta),
                "digest": manifest.digest, "load_from": snapshot}  # fmt: skip


def check_code(manifest: Manifest, settings: ModelSettings, required: bool) -> None:
    """``unsigned_config`` unless model.yaml names the code the manifest records."""
    signed = manifest.body.get("code")
    if signed is None and not required:
        return
    wanted = settings.code_config()
    signed = signed if signed is not None else ModelSettings().code_config()
    if wanted != signed:
        keys = sorted(k for k in set(wanted) | set(signed) if wanted.get(k) != signed.get(k))
        differ = [f"{k}: {wanted.get(k)!r} (signed: {signed.get(k)!r})" for k in keys]
        raise VersionFailed(
            "unsigned_config",
            "model.yaml names code the manifest does not record — "
            + "; ".join(differ)
            + " — publish the version again with this model.yaml (baton publish records it)",
        )


def verified_copy(directory: Path, declared: dict[str, FileEntry]) -> Path:
    """Copy exactly the ``declared`` files of ``directory`` into a new private directory,
    checking each one's size and SHA-256 on the bytes copied; return the copy. Raises
    ``VersionFailed`` (and leaves nothing behind) when a file is missing, extra or altered."""
    _check_listing(directory, declared)
    _check_sizes(directory, declared)
    snapshot = owned_temp_dir(SNAPSHOT_PREFIX)
    try:
        for name, entry in declared.items():
            copied = copy_hashed(directory / name, snapshot / name)
            if copied.size != entry.size:
                raise VersionFailed("size_mismatch", f"{name} changed while it was read")
            if copied.sha256 != entry.sha256:
                raise VersionFailed("hash_mismatch", f"{name} does not match its SHA-256 in "
                                    "the manifest (altered)")  # fmt: skip
    except BaseException:
        shutil.rmtree(snapshot, ignore_errors=True)
        raise
    return snapshot


def remove_stale_snapshots(directory: Path | None = None) -> int:
    """Remove verified copies left by processes that no longer run (after a ``kill -9``);
    returns how many. Copies of a running process are left alone."""
    return remove_stale(SNAPSHOT_PREFIX, directory)


def check_files(directory: Path, declared: dict[str, FileEntry]) -> None:
    """Exactly the ``declared`` files (name → FileEntry), each of its size and SHA-256, hashed
    where they are (for a delta's base, whose rebuilt result is checked again)."""
    _check_listing(directory, declared)
    _check_sizes(directory, declared)
    for name, entry in declared.items():
        if hash_file(directory / name).sha256 != entry.sha256:
            raise VersionFailed(
                "hash_mismatch", f"{name} does not match its SHA-256 in the manifest (altered)"
            )


def _check_listing(directory: Path, declared: dict[str, FileEntry]) -> None:
    present = set(listed_files(directory))
    missing = sorted(set(declared) - present)
    if missing:
        raise VersionFailed("missing_file", f"{missing[0]} is listed in the manifest but missing")
    extra = sorted(present - set(declared))
    if extra:
        raise VersionFailed("unexpected_file", f"{extra[0]} is not listed in the manifest")


def _check_sizes(directory: Path, declared: dict[str, FileEntry]) -> None:
    for name, entry in sorted(declared.items(), key=lambda item: item[1].size):
        size = (directory / name).stat().st_size
        if size != entry.size:
            raise VersionFailed(
                "size_mismatch",
                f"{name} is {size} bytes, the manifest says {entry.size} (truncated or altered)",
            )
