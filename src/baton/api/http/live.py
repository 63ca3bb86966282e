"""The live feed behind ``/dashboard``: Server-Sent Events from the event bus and a 1 s tick.

One :class:`LiveFeed` per server. Once a second it samples every version's traffic
(:class:`~baton.observe.series.TrafficSeries`) and, while dashboards are connected, builds one
``tick`` message — every model's view (versions and states, default, labels, live sequences,
its rollout with weights, gate verdict and windows) and that second's traffic per version — and
queues the same bytes to every connected dashboard. Each event on the bus becomes an ``event``
message as it happens. A dashboard that connects first gets a ``snapshot``: the same views, the
traffic of the last five minutes and the recent events. So the work is per second, not per
dashboard, and the request path does nothing for it.

A dashboard that falls ``QUEUE`` messages behind is dropped (its browser reconnects and starts
from a fresh snapshot); at shutdown every stream ends, so none holds the server up.

    feed = LiveFeed(ctx); feed.start()
    GET /dashboard/stream  ->  event: snapshot / tick / event, data: JSON
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import orjson
from starlette.requests import Request
from starlette.responses import StreamingResponse

from baton.api.context import ApiContext, context
from baton.api.http.admin import model_view, rollout_view
from baton.errors import TooManyRequests, Unavailable
from baton.observe.events import Event
from baton.observe.series import TrafficSeries

__all__ = ["LiveFeed", "stream"]

log = logging.getLogger("baton.api")
PERIOD = 1.0  # seconds between ticks
HISTORY = 300.0  # seconds of traffic a new dashboard gets
QUEUE = 256  # messages a dashboard may fall behind before it is dropped
MAX_DASHBOARDS = 64  # open at once; more are refused (429) until some close
PING = 15.0  # seconds of silence before a keep-alive comment
RECENT_EVENTS = 200


def message(kind: str, data: object) -> bytes:
    """One Server-Sent Events message (JSON has no raw newlines, so one data line)."""
    body = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    return b"event: " + kind.encode() + b"\ndata: " + body + b"\n\n"


class LiveFeed:
    def __init__(self, ctx: ApiContext, fleet: Callable[[], dict | None] | None = None) -> None:
        self._ctx = ctx
        self._fleet = fleet  # the fleet's nodes x models, where this node is in one
        self.series = TrafficSeries(ctx.metrics, HISTORY)
        self._clients: set[asyncio.Queue[bytes | None]] = set()
        self._task: asyncio.Task | None = None
        self._closed = False
        ctx.events.subscribe(self._on_event)

    @property
    def clients(self) -> int:
        return len(self._clients)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="live feed")

    async def close(self) -> None:
        """End every stream now and stop ticking."""
        self._closed = True
        for queue in list(self._clients):
            self._drop(queue)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # ---- what dashboards get -----------------------------------------------------------
    def views(self) -> dict:
        records = self._ctx.manager.models()
        models = [model_view(m) | {"rollout_view": rollout_view(m)}
                  for _, m in sorted(records.items())]  # fmt: skip
        return {"t": time.time(), "models": models, "fleet": self._fleet() if self._fleet else None}

    def snapshot(self) -> bytes:
        history: dict[str, dict[str, list]] = {}
        for (model, version), points in self.series.history().items():
            history.setdefault(model, {})[version] = [p.to_json() for p in points]
        events = [e.to_json() for e in self._ctx.events.recent(RECENT_EVENTS)]
        return message("snapshot", self.views() | {"history": history, "events": events})

    # ---- connections -------------------------------------------------------------------
    def connect(self) -> asyncio.Queue[bytes | None]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE)
        if self._closed:
            queue.put_nowait(None)
        else:
            self._clients.add(queue)
        return queue

    def disconnect(self, queue: asyncio.Queue) -> None:
        self._clients.discard(queue)

    def _send(self, data: bytes) -> None:
        for queue in list(self._clients):
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:  # too far behind: it reconnects from a snapshot
                self._drop(queue)

    def _drop(self, queue: asyncio.Queue) -> None:
        self._clients.discard(queue)
        while True:
            try:
                queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                queue.get_nowait()

    def _on_event(self, event: Event) -> None:
        if self._clients:
            self._send(message("event", event.to_json()))

    async def _run(self) -> None:
        next_at = time.monotonic()
        while True:
            next_at += PERIOD
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            try:
                self._tick()
            except Exception:  # a bad tick must not end the feed
                log.exception("the dashboard feed could not build a tick")

    def _tick(self) -> None:
        points = self.series.sample(time.time())
        if not self._clients:
            return
        traffic: dict[str, dict[str, list]] = {}
        for (model, version), point in points.items():
            traffic.setdefault(model, {})[version] = point.to_json()
        self._send(message("tick", self.views() | {"traffic": traffic}))


async def stream(request: Request) -> StreamingResponse:
    """``GET /dashboard/stream``: the live feed as ``text/event-stream``; 503 where the server
    has no feed, 429 beyond ``MAX_DASHBOARDS`` open at once."""
    feed = context(request).live
    if feed is None:
        raise Unavailable("this server has no live feed")
    if feed.clients >= MAX_DASHBOARDS:
        raise TooManyRequests(
            f"{feed.clients} dashboards are open, the most this server feeds; close one"
        )
    queue = feed.connect()

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 1000\n\n" + feed.snapshot()
            while True:
                try:
                    data = await asyncio.wait_for(queue.get(), PING)
                except TimeoutError:
                    yield b": ping\n\n"
                    continue
                if data is None:
                    return
                yield data
        finally:
            feed.disconnect(queue)

    headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
    return StreamingResponse(body(), media_type="text/event-stream", headers=headers)
