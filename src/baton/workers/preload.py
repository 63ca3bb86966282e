"""Imported once by the process that forks the workers (``multiprocessing``'s fork server).

Everything a worker imports is imported here, then the garbage collector is told to leave
those objects alone (``gc.freeze``), so the pages they fill stay shared, copy-on-write, by every
worker forked afterwards instead of being filled again in each.
"""

from __future__ import annotations

import gc

import baton.workers.worker  # noqa: F401  (imported for its side effect: everything it needs)

__all__: list[str] = []

gc.freeze()
