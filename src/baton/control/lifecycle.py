"""The one table of version states and their legal transitions.

::

    DISCOVERED → VERIFYING → LOADING → WARMING → READY → SERVING → DRAINING → UNLOADED
         any state except UNLOADED → FAILED;  FAILED / UNLOADED → DISCOVERED (retry, re-aspire)
         READY → DRAINING (loaded, then no longer wanted before it took traffic)
         DISCOVERED … WARMING → UNLOADED (load cancelled: what it built has been unloaded)

A version a source offers that has never been loaded has no state yet; views show it as
:data:`AVAILABLE` (the admin API, ``baton models`` and the repository index alike).

Nothing outside this module decides whether a transition is legal: the manager calls
:func:`check_transition` before every state change.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["AVAILABLE", "LOADING_STATES", "VersionState", "check_transition"]


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

#: What views call a version a source offers but nothing has loaded (it has no state yet).
AVAILABLE = "AVAILABLE"

#: A load is under way (and can be cancelled) in these states.
LOADING_STATES = frozenset({S.DISCOVERED, S.VERIFYING, S.LOADING, S.WARMING})

_TRANSITIONS: dict[VersionState, frozenset[VersionState]] = {
    S.DISCOVERED: frozenset({S.VERIFYING, S.FAILED, S.UNLOADED}),
    S.VERIFYING: frozenset({S.LOADING, S.FAILED, S.UNLOADED}),
    S.LOADING: frozenset({S.WARMING, S.FAILED, S.UNLOADED}),
    S.WARMING: frozenset({S.READY, S.FAILED, S.UNLOADED}),
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
