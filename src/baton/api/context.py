"""What route handlers may use, stored on the Starlette app by the composition root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request

from baton.dataplane import DataPlane
from baton.events import EventBus
from baton.manager import Manager
from baton.metrics import Metrics
from baton.repository import Repository
from baton.rollout.controller import RolloutController
from baton.settings import ServerSettings

__all__ = ["ApiContext", "context"]


@dataclass
class ApiContext:
    settings: ServerSettings
    dataplane: DataPlane
    manager: Manager
    metrics: Metrics
    events: EventBus
    repository: Repository
    rollouts: RolloutController
    audit_path: Path | None = None


def context(request: Request) -> ApiContext:
    return request.app.state.baton
