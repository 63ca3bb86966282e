"""Process memory: read the resident set, and hand freed heap pages back to the OS."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

import psutil

__all__ = ["release_memory", "resident_bytes"]

_libc = None
_name = ctypes.util.find_library("c")
if _name:
    try:
        _libc = ctypes.CDLL(_name)
        _libc.malloc_trim  # noqa: B018 - glibc only; absent elsewhere
    except (OSError, AttributeError):
        _libc = None


def release_memory() -> None:
    """Collect garbage, then ask glibc to return free heap pages (no-op without glibc)."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)


def resident_bytes() -> int:
    return psutil.Process().memory_info().rss
