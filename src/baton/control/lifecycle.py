"""The one table of version states and their legal transitions.

::

    DISCOVERED → VERIFYING → LOADING → WARMING → READY → SERVING → DRAINING → UNLOADED
         any state except UNLOADED → FAILED;  FAILED / UNLOADED → DISCOVERED (retry, re-aspire)
         READY → DRAINING (loaded, then no longer wanted before it took traffic)

Nothing outside this module decides whether a transition is legal: the manager calls
:func:`check_transition` before every state change.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["VersionState", "check_transition"]


class VersionState(StrEnum):
    DISCOVERED = "DISCOVERED"
    VERIFYING = "VERIFYING"
    LOADING = "LOADING"
    WARMING = "WARMING"
    READY = "READY"
    SERVING = "SERVING"
    DRAINING = "DRAINING"
    UNLOADED = "UNLOADED"
    FAILED = "FAILED"


S = VersionState

_TRANSITIONS: dict[VersionState, frozenset[VersionState]] = {
    S.DISCOVERED: frozenset({S.VERIFYING, S.FAILED}),
    S.VERIFYING: frozenset({S.LOADING, S.FAILED}),
    S.LOADING: frozenset({S.WARMING, S.FAILED}),
    S.WARMING: frozenset({S.READY, S.FAILED}),
    S.READY: frozenset({S.SERVING, S.DRAINING, S.FAILED}),
    S.SERVING: frozenset({S.DRAINING, S.FAILED}),
    S.DRAINING: frozenset({S.UNLOADED, S.FAILED}),
    S.UNLOADED: frozenset({S.DISCOVERED}),
    S.FAILED: frozenset({S.DISCOVERED}),
}


def check_transition(current: VersionState | None, new: VersionState) -> None:
    """Raise ``ValueError`` unless ``current → new`` is legal (``None`` means "not yet known")."""
    if current is None:
        if new is not S.DISCOVERED:
            raise ValueError(f"a new version must start DISCOVERED, not {new}")
        return
    if new not in _TRANSITIONS[current]:
        raise ValueError(f"illegal version transition {current} → {new}")
