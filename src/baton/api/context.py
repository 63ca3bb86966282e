"""What route handlers may use, stored on the Starlette app by the composition root."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from starlette.requests import Request

from baton.dataplane import DataPlane
from baton.events import EventBus
from baton.manager import Manager
from baton.metrics import Metrics
from baton.settings import ServerSettings
from baton.sources.base import Source

__all__ = ["ApiContext", "context"]


@dataclass
class ApiContext:
    settings: ServerSettings
    dataplane: DataPlane
    manager: Manager
    metrics: Metrics
    events: EventBus
    sources: list[Source] = field(default_factory=list)

    async def refresh_sources(self) -> None:
        """Make every source look now, and wait until each has published what it saw."""
        await asyncio.gather(*(s.refresh() for s in self.sources))


def context(request: Request) -> ApiContext:
    return request.app.state.baton
