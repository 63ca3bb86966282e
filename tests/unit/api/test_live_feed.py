"""The dashboard's live feed: one tick for every dashboard, events as they happen, slow
dashboards dropped, every stream ended at close."""

from __future__ import annotations

import asyncio

import orjson

from baton.api.http import live
from baton.api.http.live import LiveFeed, message
from baton.control.manager import Manager
from baton.observe.events import EventBus
from baton.observe.metrics import Metrics


class Context:  # what LiveFeed reads of the ApiContext
    def __init__(self) -> None:
        self.events = EventBus()
        self.metrics = Metrics()
        self.manager = Manager(self.events)


def parse(data: bytes) -> tuple[str, dict]:
    kind, body = data.decode().split("\n", 1)
    assert kind.startswith("event: ") and body.startswith("data: ") and data.endswith(b"\n\n")
    return kind[7:], orjson.loads(body[6:])


async def test_ticks_and_events_reach_every_connected_dashboard(monkeypatch):
    monkeypatch.setattr(live, "PERIOD", 0.05)
    ctx = Context()
    feed = LiveFeed(ctx, fleet=lambda: {"status": "converged"})
    feed.start()
    a, b = feed.connect(), feed.connect()
    kind, doc = parse(await asyncio.wait_for(a.get(), 2))
    assert kind == "tick" and doc["models"] == [] and doc["fleet"] == {"status": "converged"}
    assert parse(await asyncio.wait_for(b.get(), 2))[0] == "tick"
    ctx.events.publish("pin", "m", version=3)
    while (got := parse(await asyncio.wait_for(a.get(), 2)))[0] != "event":
        pass
    assert got[1]["kind"] == "pin" and got[1]["version"] == 3
    kind, snapshot = parse(feed.snapshot())
    assert kind == "snapshot" and [e["kind"] for e in snapshot["events"]] == ["pin"]
    feed.disconnect(b)
    assert feed.clients == 1
    await feed.close()
    while a.get_nowait() is not None:  # the stream ends after what was queued
        pass
    assert feed.clients == 0 and parse(feed.snapshot())[0] == "snapshot"
    assert feed.connect().get_nowait() is None  # nothing more to follow once closed


async def test_a_dashboard_too_far_behind_is_dropped_not_waited_for(monkeypatch):
    monkeypatch.setattr(live, "QUEUE", 3)
    ctx = Context()
    feed = LiveFeed(ctx)
    slow = feed.connect()
    for i in range(5):
        ctx.events.publish("pin", "m", version=i)
    assert feed.clients == 0
    items = [slow.get_nowait() for _ in range(slow.qsize())]
    assert items[-1] is None  # its stream ends: the browser reconnects from a snapshot


def test_messages_are_one_sse_event_with_one_data_line():
    data = message("tick", {"a": "two\nlines", 1: 2})
    assert data.count(b"\n") == 3 and parse(data)[1] == {"a": "two\nlines", "1": 2}
