"""Verify a version's files before load.

Today: the files must still be exactly the ones the source declared complete (same fingerprint),
so a directory modified between discovery and load is refused rather than loaded half-changed.
Manifests with per-file hashes and signatures plug in here.
"""

from __future__ import annotations

from baton.errors import VersionFailed
from baton.sources.base import VersionFiles
from baton.sources.filesystem import fingerprint

__all__ = ["verify_version"]


def verify_version(files: VersionFiles) -> None:
    """Raise :class:`VersionFailed` unless the files still match what was offered. Blocking."""
    now = fingerprint(files.path)
    if now is None:
        raise VersionFailed("missing_file", f"{files.path} is empty or gone")
    if now != files.fingerprint:
        raise VersionFailed("files_changed", f"files in {files.path} changed after discovery")
