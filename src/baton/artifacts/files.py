"""A version's files on disk: where they are, a cheap fingerprint of them, and their size.

Sources find versions and describe each as :class:`VersionFiles`; verification, loading and the
memory pre-flight read them. The fingerprint (every non-hidden file's relative path, size and
mtime) is what tells a source that a version has settled and the manager that it changed; it is
not a content hash (the manifest's SHA-256s are, see :mod:`baton.artifacts.manifest`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["VersionFiles", "directory_bytes", "fingerprint"]


@dataclass(frozen=True, slots=True)
class VersionFiles:
    """A complete version on disk; ``fingerprint`` changes whenever any of its files change.

    ``verified`` marks a private copy whose every byte was checked against a manifest: user
    code it names (a Python handler, a PyTorch module) may only come from inside it. An
    unverified version may also import code from its model's directory (beside model.yaml).

    A remote version (an object store) has ``fetch``: the loader calls it to bring the files
    to ``path`` before verifying them; its fingerprint is its manifest's SHA-256, which is also
    its ``digest`` (a local version's digest is read from its manifest when needed)."""

    path: Path
    fingerprint: str
    verified: bool = False
    digest: str | None = None
    fetch: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    @property
    def code_dirs(self) -> tuple[Path, ...]:
        """Where ``file.py:Class`` names in model.yaml are looked for, in order."""
        return (self.path,) if self.verified else (self.path, self.path.parent)


def fingerprint(directory: Path, strict: bool = False) -> str | None:
    """Digest of every non-hidden file's relative path, size and mtime; ``None`` if empty.
    With ``strict``, a directory that cannot be read raises ``OSError`` instead of counting
    as empty (a source must not mistake "cannot see" for "gone")."""

    def fail(error: OSError) -> None:
        if strict:
            raise error

    entries = []
    for root, dirs, files in os.walk(directory, onerror=fail):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except FileNotFoundError:
                continue
            except OSError:
                if strict:
                    raise
                continue
            entries.append(f"{os.path.relpath(full, directory)}\0{st.st_size}\0{st.st_mtime_ns}")
    if not entries:
        return None
    return hashlib.blake2b("\n".join(entries).encode(), digest_size=16).hexdigest()


def directory_bytes(directory: Path) -> int:
    """Total size of the files under ``directory``."""
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total
