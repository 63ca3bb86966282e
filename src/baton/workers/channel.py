"""Calls between the supervisor and one worker over a ``multiprocessing`` pipe, both ways.

Three kinds of message, all pickled tuples:

- ``("call", id, op, args)`` — answered by exactly one ``("reply", id, ok, value)``; a failed
  call's value is ``(kind, reason, message)`` and raises the same class on the caller's side
  for :mod:`baton.errors` classes (a :class:`~baton.errors.VersionFailed` keeps its reason),
  else :class:`WorkerError`;
- ``("note", op, args)`` — one way, no answer (statistics, events, "I am serving").

::

    channel = Channel(conn, "worker 1", on_call=handle, on_note=notice)
    channel.start()                                  # a reader thread
    signature = channel.call("load", timeout=600, key=...)

``on_call`` runs on the reader thread and returns the value, or a
:class:`concurrent.futures.Future` of it (then the reply goes out when it is done). When the
other end goes away every call waiting for an answer raises :class:`WorkerGone` and
:attr:`Channel.closed` is set.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

from baton import errors
from baton.errors import BatonError, VersionFailed

__all__ = ["Channel", "WorkerError", "WorkerGone"]

log = logging.getLogger("baton.workers")


class WorkerError(RuntimeError):
    """A call failed on the other side (not with a version failure)."""


class WorkerGone(WorkerError):
    """The other side of the channel exited (or closed it) before answering."""


def _failure(exc: BaseException) -> tuple[str, str | None, str]:
    if isinstance(exc, VersionFailed):
        return "VersionFailed", exc.reason, str(exc)
    if isinstance(exc, BatonError):
        return type(exc).__name__, None, str(exc)
    return type(exc).__name__, None, f"{type(exc).__name__}: {exc}"


def _raise(value: tuple[str, str | None, str]) -> None:
    """Raise what failed on the other side: the same class for Baton's own errors."""
    kind, reason, message = value
    if kind == "VersionFailed":
        raise VersionFailed(reason or "load_error", message)
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, BatonError):
        raise cls(message)
    raise WorkerError(message)


class Channel:
    def __init__(
        self,
        conn: Connection,
        name: str,
        on_call: Callable[[str, dict], Any] | None = None,
        on_note: Callable[[str, dict], None] | None = None,
    ) -> None:
        self.name = name
        self.closed = threading.Event()
        self._conn = conn
        self._on_call = on_call
        self._on_note = on_note
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name=f"baton-{name}", daemon=True)

    def start(self) -> None:
        self._reader.start()

    def submit(self, op: str, **args) -> Future:
        """Send a call; the future resolves with its answer (or :class:`WorkerGone`)."""
        future: Future = Future()
        call_id = next(self._ids)
        self._pending[call_id] = future
        try:
            self._send(("call", call_id, op, args))
        except (OSError, ValueError) as exc:
            self._pending.pop(call_id, None)
            future.set_exception(WorkerGone(f"{self.name} is gone ({exc})"))
        if self.closed.is_set():  # closed between the check-in and the send
            self._fail_pending()
        return future

    def call(self, op: str, timeout: float | None = None, **args) -> Any:
        """Send a call and wait for its answer (``TimeoutError`` after ``timeout`` seconds)."""
        return self.submit(op, **args).result(timeout)

    def note(self, op: str, **args) -> None:
        """Send a one-way message; dropped if the other side is gone."""
        with contextlib.suppress(OSError, ValueError):
            self._send(("note", op, args))

    def close(self) -> None:
        """Close this end; the other side's reader sees the end at once (even while a thread
        of ours is blocked reading: the socket is shut down before its descriptor closes)."""
        try:
            with socket.socket(fileno=os.dup(self._conn.fileno())) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed, or not a socket
            pass
        self._conn.close()

    def _send(self, message: tuple) -> None:
        with self._send_lock:
            self._conn.send(message)

    def _read(self) -> None:
        try:
            while True:
                message = self._conn.recv()
                kind = message[0]
                if kind == "reply":
                    _, call_id, ok, value = message
                    future = self._pending.pop(call_id, None)
                    if future is not None:
                        self._resolve(future, ok, value)
                elif kind == "call":
                    self._answer(message[1], message[2], message[3])
                elif kind == "note" and self._on_note is not None:
                    self._on_note(message[1], message[2])
        except (EOFError, OSError):
            pass
        except Exception:  # a bug in a handler: the channel is unusable from here on
            log.exception("%s: channel reader failed", self.name)
        finally:
            self.closed.set()
            self._fail_pending()

    @staticmethod
    def _resolve(future: Future, ok: bool, value: Any) -> None:
        if ok:
            future.set_result(value)
            return
        try:
            _raise(value)
        except Exception as exc:
            future.set_exception(exc)

    def _answer(self, call_id: int, op: str, args: dict) -> None:
        def reply(ok: bool, value: Any) -> None:
            with contextlib.suppress(OSError, ValueError):
                self._send(("reply", call_id, ok, value))

        def done(future: Future) -> None:
            exc = future.exception()
            reply(exc is None, future.result() if exc is None else _failure(exc))

        try:
            if self._on_call is None:
                raise WorkerError(f"{self.name} takes no calls")
            result = self._on_call(op, args)
        except Exception as exc:
            reply(False, _failure(exc))
            return
        if isinstance(result, Future):
            result.add_done_callback(done)
        else:
            reply(True, result)

    def _fail_pending(self) -> None:
        while self._pending:
            _, future = self._pending.popitem()
            if not future.done():
                future.set_exception(WorkerGone(f"{self.name} is gone"))
