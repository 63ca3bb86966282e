"""Imported once by the process that forks the workers (``multiprocessing``'s fork server).

Everything a worker imports is imported here — the worker module and what it only imports once
it runs (the event loop, uvicorn's HTTP protocol, the client that forwards to the supervisor) —
then the garbage collector is told to leave those objects alone (``gc.freeze``), so the pages
they fill stay shared, copy-on-write, by every worker forked afterwards instead of being filled
again in each (``bench/workers.py`` measures the node's memory).
"""

from __future__ import annotations

import encodings.idna  # noqa: F401  (host names)
import gc

# imported for their side effect: the modules land in the pages the workers share
import anyio._backends._asyncio  # noqa: F401  (starlette's and httpx's async backend)
import certifi  # noqa: F401  (httpx's client settings)
import httpcore  # noqa: F401  (the forwarding client's transport)
import uvicorn.lifespan.off
import uvicorn.protocols.http.httptools_impl  # noqa: F401  (uvicorn[standard]'s HTTP parser)
import uvloop  # noqa: F401

import baton.workers.worker  # noqa: F401
from baton.loading.memory import one_malloc_arena

__all__: list[str] = []

one_malloc_arena()
gc.freeze()
