"""Pure swap policies: which versions are aspired, and what the manager should do next.

No I/O, no clock, no locks: each function maps an immutable view to a decision, and tests drive
them with tables. The default is availability-preserving — a new version is loaded and made
SERVING before the version it replaces is retired, and the last serving version of a model is
never retired while the model still aspires to versions that have not come up (a broken new
version therefore leaves the old one serving).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from baton.control.lifecycle import VersionState
from baton.settings import VersionPolicy

__all__ = [
    "Action",
    "Load",
    "ModelView",
    "Retire",
    "Serve",
    "VersionView",
    "next_action",
    "select_aspired",
]

S = VersionState
_BUSY = frozenset({S.DISCOVERED, S.VERIFYING, S.LOADING, S.WARMING, S.DRAINING})


@dataclass(frozen=True, slots=True)
class VersionView:
    state: VersionState
    fingerprint: str


@dataclass(frozen=True, slots=True)
class ModelView:
    """What the policy knows of one model: aspired version → fingerprint, and known versions."""

    name: str
    aspired: Mapping[int, str]
    versions: Mapping[int, VersionView]


@dataclass(frozen=True, slots=True)
class Load:
    model: str
    version: int


@dataclass(frozen=True, slots=True)
class Serve:
    model: str
    version: int


@dataclass(frozen=True, slots=True)
class Retire:
    model: str
    version: int


Action = Load | Serve | Retire


def select_aspired(
    available: Mapping[int, str],
    policy: VersionPolicy,
    *,
    pinned: int | None = None,
    labelled: Iterable[int] = (),
    disabled: bool = False,
) -> dict[int, str]:
    """The versions a model should serve, from the complete versions a source offers.

    ``pinned`` (an admin pin or rollback) replaces the version policy while it is available;
    labelled versions are kept in addition; ``disabled`` (an admin unload) aspires to nothing.
    """
    if disabled:
        return {}
    if pinned is not None and pinned in available:
        chosen = {pinned}
    elif policy.all:
        chosen = set(available)
    elif policy.specific is not None:
        chosen = set(policy.specific) & set(available)
    else:
        chosen = set(sorted(available, reverse=True)[: policy.latest])
    chosen |= set(labelled) & set(available)
    return {v: available[v] for v in sorted(chosen)}


def _wants_load(version: int, fingerprint: str, view: VersionView | None) -> bool:
    if view is None or view.state is S.UNLOADED:
        return True
    # A failed version is retried only once its files have changed.
    return view.state is S.FAILED and view.fingerprint != fingerprint


def next_action(models: Iterable[ModelView]) -> Action | None:
    """The single next step, or ``None`` when every model is where its aspired set says.

    Order: load aspired versions (newest first), then make READY aspired versions SERVING, then
    retire versions nobody aspires to — but only once an aspired version serves, or when the
    model aspires to nothing at all.
    """
    models = sorted(models, key=lambda m: m.name)
    for m in models:
        if any(v.state in _BUSY - {S.DRAINING} for v in m.versions.values()):
            continue  # one load at a time per model
        for version in sorted(m.aspired, reverse=True):
            if _wants_load(version, m.aspired[version], m.versions.get(version)):
                return Load(m.name, version)
    for m in models:
        for version in sorted(m.aspired, reverse=True):
            view = m.versions.get(version)
            if view is not None and view.state is S.READY:
                return Serve(m.name, version)
    for m in models:
        aspired_serving = any(
            m.versions.get(v) is not None and m.versions[v].state is S.SERVING for v in m.aspired
        )
        if m.aspired and not aspired_serving:
            continue
        for version in sorted(m.versions):
            if version not in m.aspired and m.versions[version].state in (S.READY, S.SERVING):
                return Retire(m.name, version)
    return None
