"""A source whose offer is set by code: for tests, benchmarks and embedding Baton."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from baton.sources.base import ModelSpec, Publish

__all__ = ["StaticSource"]


class StaticSource:
    def __init__(self, specs: Mapping[str, ModelSpec] | None = None, name: str = "static") -> None:
        self.name = name
        self._specs = dict(specs or {})
        self._changed = asyncio.Event()
        self._publish: Publish | None = None

    def set(self, specs: Mapping[str, ModelSpec]) -> None:
        """Replace the whole offer; it is published on the next turn of :meth:`run`."""
        self._specs = dict(specs)
        self._changed.set()

    async def refresh(self) -> None:
        if self._publish is not None:
            self._publish(self.name, dict(self._specs))

    async def run(self, publish: Publish) -> None:
        self._publish = publish
        while True:
            publish(self.name, dict(self._specs))
            self._changed.clear()
            await self._changed.wait()
