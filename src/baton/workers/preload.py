"""Imported once by the process that forks the workers (``multiprocessing``'s fork server).

Everything a worker imports is imported here — the worker module and what it only imports once
it runs (``worker.RUNTIME_MODULES``) — then the garbage collector is told to leave those objects
alone (``gc.freeze``), so the pages they fill stay shared, copy-on-write, by every worker forked
afterwards instead of being filled again in each (``bench/workers.py`` measures the node's
memory). Workers also allocate from one malloc heap (:func:`one_malloc_arena`).
"""

from __future__ import annotations

import contextlib
import gc
import importlib

from baton.loading.memory import one_malloc_arena
from baton.workers.worker import RUNTIME_MODULES  # and with it, everything the worker needs

__all__: list[str] = []

for _name in RUNTIME_MODULES:
    with contextlib.suppress(ImportError):
        importlib.import_module(_name)

one_malloc_arena()
gc.freeze()
