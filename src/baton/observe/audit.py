"""The audit log: every event, appended as one JSON line to a file that outlives the process.

Each event is written and flushed before :meth:`AuditLog.on_event` returns, so a ``kill -9``
loses nothing already published (the kernel holds flushed data); with ``fsync=True`` each line
also survives power loss, at the cost of a disk sync per event. A crash in the middle of a write
can leave a torn last line: :func:`read_audit_log` skips it and reports it. When the file grows
past ``max_bytes`` it is renamed to ``<name>.1`` (replacing an older one) and a new file begun.

    log = AuditLog(Path("repo/.baton/audit.jsonl"))
    bus.subscribe(log.on_event)
    entries, torn = read_audit_log(log.path)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import orjson

from baton.observe.events import Event

__all__ = ["AuditLog", "read_audit_log"]

log = logging.getLogger("baton.observe.audit")


class AuditLog:
    def __init__(self, path: Path, *, fsync: bool = False, max_bytes: int = 64 * 2**20) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._max_bytes = max_bytes
        self._file = self.path.open("ab")
        self._size = self._file.tell()

    def on_event(self, event: Event) -> None:
        line = orjson.dumps(event.to_json(), option=orjson.OPT_NON_STR_KEYS) + b"\n"
        if self._size + len(line) > self._max_bytes and self._size:
            self._rotate()
        self._file.write(line)
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())
        self._size += len(line)

    def _rotate(self) -> None:
        self._file.close()
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self._file = self.path.open("ab")
        self._size = 0
        log.info("audit log rotated to %s.1", self.path)

    def close(self) -> None:
        self._file.close()


def read_audit_log(path: Path, limit: int | None = None) -> tuple[list[dict], int]:
    """The entries of an audit log, oldest first (the last ``limit`` only, if given), and the
    number of lines that could not be parsed (a torn last line after a crash)."""
    try:
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
