"""Private temporary directories named after the process that owns them, so that what a
process killed with -9 left behind can be told apart from what a running one uses.

    path = owned_temp_dir("baton-verified-")     # /tmp/baton-verified-<pid>-<random>
    remove_stale("baton-verified-")              # those of processes that no longer run
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["owned_temp_dir", "remove_stale"]


def owned_temp_dir(prefix: str) -> Path:
    """A new private directory ``<tmp>/<prefix><pid>-<random>`` (mode 0700)."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))


def remove_stale(prefix: str, directory: Path | None = None) -> int:
    """Remove the ``prefix`` directories of processes that no longer run; returns how many.
    Those of this process and of running ones are left alone."""
    removed = 0
    for path in Path(directory or tempfile.gettempdir()).glob(f"{prefix}*"):
        pid = path.name[len(prefix) :].split("-", 1)[0]
        if pid.isascii() and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True
