"""The gRPC server's worker threads: a few that take calls one after another, more only while
some of them wait.

Waking a sleeping thread costs more CPU than answering a small inference, so the pool keeps
``size`` threads running that are not waiting on something slow: a thread that finishes a call
takes the next queued one without sleeping, and a call rarely has to wake a thread. A call
about to wait for long (a dynamic batch, a repository load, a slow model: wrap the wait in
:meth:`CallPool.blocking`) does not count against ``size`` meanwhile, so other calls keep
being answered — up to ``limit`` threads in all; the extra threads end once they are not needed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from contextlib import contextmanager
from typing import Any

__all__ = ["CallPool"]


class CallPool(Executor):
    """``size`` running threads at most, besides those in :meth:`blocking`; ``limit`` in all."""

    def __init__(self, size: int, limit: int, name: str = "baton-grpc") -> None:
        if not 0 < size <= limit:
            raise ValueError(f"need 0 < size <= limit, got size {size}, limit {limit}")
        self._size = size
        self._limit = limit
        self._name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()  # alive
        self._idle = 0  # waiting for a call
        self._blocked = 0  # inside blocking()
        self._started = 0  # for thread names
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a shut down CallPool")
            self._queue.put((future, fn, args, kwargs))
            self._grow()
        return future

    @contextmanager
    def blocking(self) -> Iterator[None]:
        """Around a long wait on a pool thread: another thread may take calls meanwhile."""
        with self._lock:
            self._blocked += 1
            self._grow()
        try:
            yield
        finally:
            with self._lock:
                self._blocked -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more calls; the threads end once the queued calls are done
        (``cancel_futures``: queued calls are cancelled instead)."""
        with self._lock:
            self._closed = True
            if cancel_futures:
                while True:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            threads = list(self._threads)
            for _ in threads:
                self._queue.put(None)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def _grow(self) -> None:
        """With the lock held: start a thread if a queued call would otherwise wait."""
        running = len(self._threads) - self._blocked
        if self._closed or self._idle or running >= self._size or len(self._threads) >= self._limit:
            return
        self._started += 1
        thread = threading.Thread(
            target=self._work, name=f"{self._name}-{self._started}", daemon=True
        )
        self._threads.add(thread)
        thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._lock:
                self._idle += 1
            item = self._queue.get()
            with self._lock:
                self._idle -= 1
                if item is None:
                    self._threads.discard(me)
                    return
            future, fn, args, kwargs = item
            del item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                    del result
            del future, fn, args, kwargs
            with self._lock:
                if len(self._threads) - self._blocked > self._size:  # one too many now
                    self._threads.discard(me)
                    return
