"""Process memory: read the resident set and what is available, and hand freed heap pages back
to the OS."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

import psutil

__all__ = [
    "available_memory",
    "one_malloc_arena",
    "release_memory",
    "resident_bytes",
    "tune_gc_for_serving",
]

_M_ARENA_MAX = -8  # glibc's mallopt parameter

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


def one_malloc_arena() -> None:
    """Have every thread of this process (and of processes forked from it) allocate from glibc's
    main heap, instead of an arena of its own per thread (no-op without glibc). An arena per
    thread keeps memory its thread once used; in a worker process that is several MiB more than
    the shared heap, whose free space the next allocation reuses (``bench/workers.py``).
    Python allocates under the GIL, so the threads rarely contend for the heap's lock."""
    if _libc is not None:
        _libc.mallopt(_M_ARENA_MAX, 1)


def resident_bytes() -> int:
    return psutil.Process().memory_info().rss


def available_memory() -> int:
    """Bytes of memory the system can give without swapping (the memory pre-flight's input)."""
    return psutil.virtual_memory().available


def tune_gc_for_serving() -> None:
    """Keep the cyclic garbage collector out of request latency.

    Everything alive after start-up (imported modules, loaded frameworks) is moved to the
    permanent generation, so full collections no longer walk it; gen-0 collections run every
    10,000 allocations instead of every 700. Measured on the hot path (BENCHMARKS.md): p99 at
    concurrency 64 fell from 42 ms to 9 ms. Call once, after the initial models are loaded.
    """
    release_memory()  # what loading left free goes back to the OS before the heap is frozen
    gc.freeze()
    gc.set_threshold(10_000, 50, 50)
