"""The server log: one readable line per event (a subscriber of the event bus).

Failures, refusals, rollbacks and forced unloads are warnings; everything else is info, and the
memory pre-flight's routine "fits" is debug. Each event is logged once, here: the code that
publishes an event does not log it too.
"""

from __future__ import annotations

import logging

from baton.observe.events import Event

__all__ = ["describe_event", "log_event"]

log = logging.getLogger("baton")

_WARN_STATES = frozenset(
    {"FAILED", "ROLLED_BACK", "ABORTED", "refused", "refuse", "unavailable", "invalid",
     "kept_last_valid", "failing"}
)  # fmt: skip


def describe_event(e: Event) -> str:
    """One line for an event, without the time (the log adds it)."""
    v = f" v{e.version}" if e.version is not None else ""
    why = f" ({e.reason}: {e.message})" if e.reason and e.message else ""
    if e.kind == "state":
        return f"{e.model}{v} → {e.state}{why or (f' ({e.message})' if e.message else '')}"
    if e.kind == "rollout":
        d = e.data
        steps = d.get("steps") or []
        where = (
            f"step {d['step'] + 1}/{len(steps)} ({d['weight'] * 100:g}%)"
            if e.state in ("RUNNING", "PAUSED")
            else ""
        )
        reason = f" — {e.reason}" if e.reason else ""
        return (f"{e.model} rollout v{d.get('stable')} → v{d.get('candidate')}: "
                f"{e.state} {where}".rstrip() + reason)  # fmt: skip
    if e.kind == "swap":
        before = e.data.get("from")
        now = f"now serves v{e.version}" if e.version is not None else "serves nothing"
        return f"{e.model} {now}" + (f" (was v{before})" if before is not None else "")
    if e.kind == "source":
        what = (
            "cannot see its store; its last offer stands"
            if e.state == "unavailable"
            else ("sees its store again")
        )
        return f"source {e.data.get('source')} {what}" + (f" ({e.message})" if e.message else "")
    if e.kind == "memory":
        return f"{e.model}{v} memory pre-flight: {e.state} — {e.message}"
    detail = e.message or (e.state or "")
    return f"{e.model} {e.kind}{v}" + (f": {detail}" if detail else "")


def log_event(event: Event) -> None:
    if event.kind == "memory" and event.state == "beside":
        level = logging.DEBUG
    elif event.state in _WARN_STATES or event.kind == "fallback" or event.reason == "drain_timeout":
        level = logging.WARNING
    else:
        level = logging.INFO
    log.log(level, "%s", describe_event(event))
