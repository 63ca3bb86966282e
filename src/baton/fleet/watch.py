"""Watching etcd from asyncio: a thread follows a key prefix and wakes an asyncio event.

etcd3gw's watch is a blocking iterator over a streaming HTTP response. :class:`PrefixWatch`
runs it in a daemon thread and sets an :class:`asyncio.Event` (on the event loop's thread) for
every change, and once more whenever the watch (re)connects — whatever changed while it was
down is then read afresh. A watch that breaks (etcd down, restarted) is retried with backoff;
since a stream cut by etcd's restart is not always noticed by etcd3gw, every watch is also
cancelled and made afresh every ``RENEW`` seconds (each renewal wakes the reader once).

    watch = PrefixWatch(store, store.keys.nodes, changed)   # changed: asyncio.Event
    watch.start(asyncio.get_running_loop())
    ...
    watch.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

from baton.fleet.store import FleetStore

__all__ = ["RENEW", "PrefixWatch"]

RENEW = 10.0  # seconds a watch lives before it is made afresh (a dead stream is never noticed)

log = logging.getLogger("baton.fleet")


class PrefixWatch:
    def __init__(self, store: FleetStore, prefix: str, changed: asyncio.Event) -> None:
        self.store, self.prefix, self.changed = store, prefix, changed
        self._stop = threading.Event()
        self._cancel = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._follow, name=f"watch {self.prefix}",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        cancel = self._cancel
        if cancel is not None:
            with contextlib.suppress(Exception):  # the stream may already be gone
                cancel()

    def _signal(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.changed.set)

    def _follow(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            renew = None
            try:
                opened = time.monotonic()
                events, self._cancel = self.store.watch_prefix(self.prefix)
                if self._stop.is_set():  # stopped while connecting
                    self._cancel()
                    return
                # etcd3gw's stream never ends on its own when etcd goes away (its reader thread
                # just stops), so each watch is cancelled and made afresh after RENEW seconds.
                renew = threading.Timer(RENEW, self._cancel)
                renew.daemon = True
                renew.start()
                self._signal()  # (re)connected: read everything afresh
                backoff = 0.5
                for _ in events:
                    if self._stop.is_set():
                        return
                    self._signal()
                if time.monotonic() - opened > 1.0:
                    continue  # renewed: watch again at once (a stream that ends at once waits)
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.debug("watch of %s broke (%s); retrying in %.1f s", self.prefix, exc, backoff)
            finally:
                if renew is not None:
                    renew.cancel()
            self._signal()
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
