"""What route handlers may use, stored on the Starlette app by the composition root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.requests import Request

from baton.api.auth import AccessPolicy
from baton.api.dataplane import DataPlane
from baton.api.repository import Repository
from baton.control.manager import Manager
from baton.observe.events import EventBus
from baton.observe.metrics import Metrics
from baton.settings import ServerSettings

if TYPE_CHECKING:
    from baton.api.http.live import LiveFeed

__all__ = ["ApiContext", "context"]


@dataclass
class ApiContext:
    settings: ServerSettings
    dataplane: DataPlane
    manager: Manager
    metrics: Metrics
    events: EventBus
    repository: Repository
    access: AccessPolicy
    audit_path: Path | None = None
    #: the node's metrics when they come from several processes (``--workers``)
    metrics_text: Callable[[], Awaitable[bytes]] | None = None
    #: the dashboard's live feed (``/dashboard/stream``)
    live: LiveFeed | None = None


def context(request: Request) -> ApiContext:
    return request.app.state.baton
