"""The audit log: every event, appended as one JSON line to a file that outlives the process.

Each event is written and flushed before :meth:`AuditLog.on_event` returns, so a ``kill -9``
loses nothing already published (the kernel holds flushed data); with ``fsync=True`` each line
also survives power loss, at the cost of a disk sync per event. A crash in the middle of a write
can leave a torn last line: :func:`read_audit_log` skips it and reports it. When the file grows
past ``max_bytes`` it is renamed to ``<name>.1`` (replacing an older one) and a new file begun.

One writer at a time: the log holds an exclusive lock on ``<name>.lock`` (which records the
writer's PID) for as long as it is open, and a second :class:`AuditLog` on the same path raises
:class:`AuditLogInUse` — two servers on one repository would otherwise interleave their events
with clashing sequence numbers. The kernel drops the lock when the process dies, ``kill -9``
included.

A write that fails (a full disk, an I/O error) never reaches the caller: the event is lost
from the file, ``on_error`` is told, and the next event is tried again (``on_recover`` is told
when writing works again). Inference and the event bus carry on either way.

    log = AuditLog(Path("repo/.baton/audit.jsonl"), on_error=report)
    bus.subscribe(log.on_event)
    entries, torn = read_audit_log(log.path)
    page = tail_audit_log(log.path, limit=100, before=None)   # newest first pages
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from baton.observe.events import Event

__all__ = ["AuditLog", "AuditLogInUse", "AuditPage", "read_audit_log", "tail_audit_log"]

log = logging.getLogger("baton.observe.audit")


class AuditLogInUse(OSError):
    """Another process writes this audit log."""


class AuditLog:
    def __init__(
        self,
        path: Path,
        *,
        fsync: bool = False,
        max_bytes: int = 64 * 2**20,
        on_error: Callable[[OSError], None] | None = None,
        on_recover: Callable[[], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = self._take_lock(self.path.with_name(self.path.name + ".lock"))
        self._fsync = fsync
        self._max_bytes = max_bytes
        self._on_error, self._on_recover = on_error, on_recover
        self.failing = False
        self._file = self.path.open("ab", buffering=0)  # unbuffered: nothing left half-sent
        self._size = self._file.tell()

    def on_event(self, event: Event) -> None:
        line = orjson.dumps(event.to_json(), option=orjson.OPT_NON_STR_KEYS) + b"\n"
        try:
            if self._size + len(line) > self._max_bytes and self._size:
                self._rotate()
            view = memoryview(line)
            while view:
                view = view[self._file.write(view) :]
            if self._fsync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            if not self.failing:
                log.error("cannot write the audit log %s: %s", self.path, exc)
            self.failing = True
            if self._on_error is not None:
                self._on_error(exc)
            return
        self._size += len(line)
        if self.failing:
            self.failing = False
            log.warning("the audit log %s is written again", self.path)
            if self._on_recover is not None:
                self._on_recover()

    def _rotate(self) -> None:
        self._file.close()
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self._file = self.path.open("ab", buffering=0)
        self._size = 0
        log.info("audit log rotated to %s.1", self.path)

    @staticmethod
    def _take_lock(lock_path: Path) -> int:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AuditLogInUse(
                f"the audit log {lock_path.with_suffix('')} is in use by another server "
                f"(pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def close(self) -> None:
        self._file.close()
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)


def read_audit_log(path: Path, limit: int | None = None) -> tuple[list[dict], int]:
    """The entries of an audit log, oldest first (the last ``limit`` only, if given), and the
    number of lines that could not be parsed (a torn last line after a crash)."""
    try:
        if not Path(path).is_file():  # a device or a pipe: nothing to read back
            return [], 0
        lines = Path(path).read_bytes().splitlines()
    except FileNotFoundError:
        return [], 0
    entries, torn = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            entries.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            torn += 1
    return (entries[-limit:] if limit else entries), torn


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[dict]  # oldest first
    torn: int  # lines in the page that could not be parsed
    before: int | None  # byte offset to pass for the next (older) page; None at the start


def tail_audit_log(path: Path, limit: int, before: int | None = None,
                   chunk: int = 256 * 1024) -> AuditPage:  # fmt: skip
    """The newest ``limit`` entries that end before byte offset ``before`` (the end of the
    file when ``None``), read backwards: a page costs what it holds, not the whole log."""
    entries: list[dict] = []
    torn = 0
    if not Path(path).is_file():  # missing, a device or a pipe: nothing to read back
        return AuditPage([], 0, None)
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return AuditPage([], 0, None)
    with f:
        size = f.seek(0, os.SEEK_END)
        end = size if before is None else max(0, min(before, size))
        position = end  # where the earliest line taken so far starts
        rest = b""  # the start of a line cut by the block boundary
        while end > 0 and len(entries) < limit:
            start = max(0, end - chunk)
            f.seek(start)
            block = f.read(end - start) + rest
            lines = block.split(b"\n")
            rest = lines.pop(0) if start > 0 else b""
            offset = start + len(rest) + (1 if start > 0 else 0)
            starts = []
            for line in lines:
                starts.append(offset)
                offset += len(line) + 1
            for line_start, line in zip(reversed(starts), reversed(lines), strict=True):
                position = line_start
                if not line.strip():
                    continue
                try:
                    entries.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    torn += 1
                if len(entries) == limit:
                    break
            end = start
    entries.reverse()
    return AuditPage(entries, torn, position if position > 0 else None)
