"""Operator intents on a model's record: pure checks and choices behind pin, rollback, label and
rollout start, and the words that explain a cancelled load.

An operator naming a version is deliberate: it brings back a version that was rolled back
(``rejected``) and retries one that FAILED, instead of silently doing nothing. What the version
policy would skip on its own, an operator may still ask for.
"""

from __future__ import annotations

from baton.control.lifecycle import VersionState
from baton.control.records import ModelRecord
from baton.errors import Conflict, NotFound

__all__ = ["cancel_reason", "require_version", "rollback_target", "want"]


def require_version(m: ModelRecord, version: int, what: str = "version") -> None:
    """Raise :class:`NotFound` unless a source offers ``version`` of ``m`` complete."""
    if version not in m.available:
        offered = ", ".join(map(str, sorted(m.available))) or "none"
        raise NotFound(
            f"model '{m.name}' has no complete {what} {version} in its source "
            f"(complete versions: {offered})"
        )


def want(m: ModelRecord, version: int) -> None:
    """An operator asked for ``version``: forget its rollback, and retry it if it FAILED."""
    m.rejected.pop(version, None)
    r = m.versions.get(version)
    if r is not None and r.state is VersionState.FAILED:
        r.retry = True


def rollback_target(m: ModelRecord) -> int:
    """The version that was the default before the current one (the newest older version when
    the history has none); raises :class:`Conflict` when there is no such version."""
    current = m.default_version()
    for v in reversed(m.history):
        if v != current and v in m.available:
            return v
    older = [v for v in m.available if current is None or v < current]
    if not older:
        raise Conflict(f"model '{m.name}' has no earlier version to roll back to")
    return max(older)


def cancel_reason(m: ModelRecord, version: int) -> str:
    """Why a load of ``version`` is no longer wanted, in words for the event."""
    if not m.offered:
        return "the model was removed from its source"
    if m.disabled:
        return "the model was unloaded"
    if version not in m.available:
        return "the version was withdrawn from its source"
    if m.pinned is not None and m.pinned != version:
        return f"the model was pinned to version {m.pinned}"
    return "the version policy no longer selects it"
