"""The model-repository extension, protocol-agnostic: index, load and unload a whole model.

Both the HTTP routes (``/v2/repository/...``) and the gRPC RPCs (``RepositoryIndex``,
``RepositoryModelLoad``, ``RepositoryModelUnload``) call this. Load and unload are overrides the
manager applies on its next tick; the calls return once the model has settled (every aspired
version SERVING or FAILED), as clients of the protocol expect.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from baton.control.lifecycle import AVAILABLE, VersionState
from baton.control.manager import Manager
from baton.errors import NotFound, Unavailable
from baton.sources.base import Source

__all__ = ["IndexEntry", "Repository"]

LOAD_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class IndexEntry:
    name: str
    version: str
    state: str
    reason: str = ""


class Repository:
    def __init__(self, manager: Manager, sources: list[Source]) -> None:
        self._manager = manager
        self._sources = sources

    async def refresh(self) -> None:
        """Make every source look now, and wait until each has published what it saw."""
        await asyncio.gather(*(s.refresh() for s in self._sources))

    def index(self, ready_only: bool = False) -> list[IndexEntry]:
        """Every known version of every model (``AVAILABLE`` = offered but never loaded, as in
        the admin API)."""
        rows = []
        for name, record in sorted(self._manager.models().items()):
            for v in sorted(set(record.available) | set(record.versions)):
                r = record.versions.get(v)
                state = r.state.value if r and r.state else AVAILABLE
                if ready_only and state != VersionState.SERVING:
                    continue
                rows.append(IndexEntry(name, str(v), state, (r.message if r else None) or ""))
        return rows

    async def load(self, name: str) -> None:
        """Enable ``name`` (after an unload), rescan, and wait until it has settled.

        Raises :class:`NotFound` for a model no source offers and :class:`Unavailable` when no
        version of it came up (the reasons of the failed versions are in the message).
        """
        await self.refresh()
        record = self._manager.models().get(name)
        if record is None:
            raise NotFound(f"model '{name}' is not in the model repository")
        self._manager.set_enabled(name, True)
        settled = await self._manager.wait_until(record.settled, timeout=LOAD_TIMEOUT)
        if record.default_version() is None:
            failed = [
                f"version {v}: {r.message}"
                for v, r in sorted(record.versions.items())
                if r.state is VersionState.FAILED
            ]
            detail = "; ".join(failed) or (
                "still loading" if not settled else "no complete version"
            )
            raise Unavailable(f"failed to load '{name}': {detail}")

    async def unload(self, name: str) -> None:
        """Retire every version of ``name`` and wait until they are drained and unloaded."""
        record = self._manager.model(name)
        self._manager.set_enabled(name, False)
        await self._manager.wait_until(record.settled, timeout=record.settings.drain_timeout + 30)
