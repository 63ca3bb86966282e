"""The supervisor's stand-in for a version loaded into every worker.

The manager's loader treats it as any runtime (:class:`baton.runtimes.base.Runtime`), so the
whole swap contract — verify, load beside, contract check, warm-up, golden set, serve, drain,
unload — runs unchanged in the supervisor, while the work happens in the workers:

- :meth:`PooledRuntime.load` loads and warms the version in every worker, one after the other
  (so the node's memory peak is one more copy, not N); one worker's failure fails the version
  (and unloads it from the workers that had it);
- :meth:`PooledRuntime.predict` asks one worker (the loader's warm-up timing and golden set);
- :meth:`PooledRuntime.unload` drains and unloads it in every worker, each on its own
  requests in flight; :attr:`PooledRuntime.drain` reports the slowest.

``token`` names this loaded copy across the node (a version unloaded and loaded again gets a
new one), and is what a :class:`~baton.workers.generation.Generation` routes to.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from baton.runtimes.base import Runtime
from baton.settings import ModelSettings
from baton.types import Signature

if TYPE_CHECKING:
    from baton.workers.pool import WorkerPool

__all__ = ["PooledRuntime"]

_tokens = itertools.count(1)


class PooledRuntime(Runtime):
    answers_here = False  # worker processes answer its requests

    def __init__(
        self,
        pool: WorkerPool,
        path: Path,
        settings: ModelSettings,
        code_dirs: tuple[Path, ...] | None = None,
    ) -> None:
        self.token = next(_tokens)
        self.pool = pool
        self.path = path  # where the workers load from (the pool keeps its own link to it)
        self.settings = settings
        self.code_dirs = code_dirs
        self.platform = "unknown"
        self._structure: dict | None = None
        self._memory: int | None = None
        self.drain: tuple[float, bool, int] = (0.0, False, 0)  # seconds, forced, in flight

    def load(self) -> None:
        facts = self.pool.load_everywhere(self)
        self._signature: Signature | None = facts["signature"]
        self._structure = facts["structure"]
        self.platform = facts["platform"]
        self.computes_on_cpu = facts["computes_on_cpu"]
        self._memory = facts["memory"]

    def predict(
        self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None
    ) -> dict[str, np.ndarray]:
        return self.pool.predict(self, inputs, None if outputs is None else list(outputs))

    def unload(self) -> None:
        self.drain = self.pool.unload_everywhere(self)

    def structure(self) -> dict | None:
        return self._structure

    def memory_bytes(self) -> int | None:
        """What the load added to the workers' resident memory, together."""
        return self._memory
