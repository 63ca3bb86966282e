"""Every state change is an :class:`Event`, published on one :class:`EventBus`.

Subscribers (Prometheus metrics, the server log, the audit log; the bus itself keeps a window
of recent events for the admin API) are plain callables invoked synchronously, in publish
order, on the event loop thread. A subscriber must be quick and must not raise; one that raises
is logged and kept. Nobody polls the manager for changes: whatever needs to know subscribes.

Kinds: ``state`` (a version's lifecycle; ``state``, ``reason``, ``message``), ``swap`` (the
model's default version changed), ``rollout``, ``pin`` / ``unpin`` / ``rollback`` / ``label`` /
``enable`` / ``disable`` (operator intents; ``pin`` with state ``refused`` when its version
failed), ``fallback`` (a failed version made the version policy choose another), ``memory``,
``rate_limit``, ``config_error``, ``ignored_change``, ``batching_disabled``.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

__all__ = ["Event", "EventBus"]

log = logging.getLogger("baton.observe.events")


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. ``kind`` is a short verb (``state``, ``swap``, ``pin``, ...)."""

    kind: str
    model: str
    version: int | None = None
    state: str | None = None
    reason: str | None = None
    message: str | None = None
    data: dict = field(default_factory=dict)
    seq: int = 0
    time: float = 0.0

    def to_json(self) -> dict:
        return asdict(self)


Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out of events to subscribers, plus a bounded window of recent events."""

    def __init__(self, keep: int = 1000) -> None:
        self._subscribers: list[Subscriber] = []
        self._recent: deque[Event] = deque(maxlen=keep)
        self._seq = itertools.count(1)

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def publish(self, kind: str, model: str, **fields) -> Event:
        """Stamp, remember and deliver one event; returns it."""
        event = Event(kind, model, seq=next(self._seq), time=time.time(), **fields)
        self._recent.append(event)
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", subscriber, event)
        return event

    def recent(self, limit: int = 100, model: str | None = None) -> list[Event]:
        """The newest ``limit`` events (optionally of one model), oldest first."""
        events = [e for e in self._recent if model is None or e.model == model]
        return events[-limit:] if limit > 0 else []
