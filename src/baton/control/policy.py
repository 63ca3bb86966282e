"""Pure swap policies: which versions a model aspires to, and what to do next for it.

No I/O, no clock, no locks: each function maps an immutable view of one model to a decision,
and tests drive them with tables. The defaults are availability-preserving:

- a new version is loaded and made SERVING before the version it replaces is retired;
- a model keeps a serving version until an aspired one serves, unless an operator unloaded it
  (disabled it, or removed it from the source): a broken new version, a pin on a version that
  fails or a source that offers nothing usable never leaves a model with nothing to answer;
- a version that FAILED with the files it has now (or was rolled back) is skipped by the
  version policy, which falls back to the next newest: ``latest N`` means the N newest
  versions that load, at start as at any other time;
- a load nobody aspires to any more (version withdrawn, pin moved) is cancelled.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from baton.control.lifecycle import LOADING_STATES, VersionState
from baton.settings import VersionPolicy

__all__ = [
    "Action",
    "Cancel",
    "Load",
    "ModelView",
    "Retire",
    "Serve",
    "VersionView",
    "next_action",
    "select_aspired",
    "unusable_versions",
]

S = VersionState


@dataclass(frozen=True, slots=True)
class VersionView:
    """One known version: its state, the fingerprint of the files it was loaded (or failed)
    with, whether an operator asked for this FAILED version again (``retry``), and whether its
    load was already cancelled (``cancelling``: it ends UNLOADED at its next safe point)."""

    state: VersionState
    fingerprint: str
    retry: bool = False
    cancelling: bool = False


@dataclass(frozen=True, slots=True)
class ModelView:
    """What the policy knows of one model: aspired version → fingerprint, the known versions,
    and ``unload`` — an operator unloaded the whole model, so nothing needs to keep serving."""

    name: str
    aspired: Mapping[int, str]
    versions: Mapping[int, VersionView]
    unload: bool = False


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


@dataclass(frozen=True, slots=True)
class Cancel:
    """Abandon a load under way: it unloads whatever it built and ends UNLOADED."""

    model: str
    version: int


Action = Load | Serve | Retire | Cancel


def unusable_versions(
    offered: Mapping[int, str], known: Mapping[int, VersionView], rejected: Collection[int] = ()
) -> set[int]:
    """Offered versions the version policy must skip: those that FAILED with the very files
    offered now (unless an operator asked to retry), and ``rejected`` ones (rolled back)."""
    failed = {
        v
        for v, view in known.items()
        if view.state is S.FAILED and offered.get(v) == view.fingerprint and not view.retry
    }
    return failed | (set(rejected) & set(offered))


def select_aspired(
    available: Mapping[int, str],
    policy: VersionPolicy,
    *,
    pinned: int | None = None,
    labelled: Iterable[int] = (),
    disabled: bool = False,
    unusable: Collection[int] = (),
) -> dict[int, str]:
    """The versions a model should serve, from the complete versions a source offers.

    ``pinned`` (an admin pin or rollback) replaces the version policy while it is available;
    labelled versions are kept in addition; ``disabled`` (an admin unload) aspires to nothing.
    ``unusable`` versions (see :func:`unusable_versions`) are skipped by the version policy,
    so ``latest N`` falls back to the N newest usable versions; an explicit pin or label
    still names its version.
    """
    if disabled:
        return {}
    usable = [v for v in available if v not in unusable]
    if pinned is not None and pinned in available:
        chosen = {pinned}
    elif policy.all:
        chosen = set(usable)
    elif policy.specific is not None:
        chosen = set(policy.specific) & set(usable)
    else:
        chosen = set(sorted(usable, reverse=True)[: policy.latest])
    chosen |= set(labelled) & set(available)
    return {v: available[v] for v in sorted(chosen)}


def _wants_load(fingerprint: str, view: VersionView | None) -> bool:
    if view is None or view.state is S.UNLOADED:
        return True
    # A failed version is retried once its files have changed, or when an operator asks.
    return view.state is S.FAILED and (view.fingerprint != fingerprint or view.retry)


def next_action(m: ModelView) -> Action | None:
    """The next step for one model, or ``None`` when it is where its aspired set says.

    Order: cancel loads nobody aspires to; load the newest aspired version that needs it (one
    load at a time per model); make READY aspired versions SERVING; retire loaded versions
    nobody aspires to — READY ones at once, SERVING ones only once an aspired version serves
    or when the operator unloaded the model.
    """
    for version, view in sorted(m.versions.items()):
        if view.state in LOADING_STATES and not view.cancelling and version not in m.aspired:
            return Cancel(m.name, version)
    loading = any(
        view.state in LOADING_STATES and not view.cancelling for view in m.versions.values()
    )
    if not loading:
        for version in sorted(m.aspired, reverse=True):
            if _wants_load(m.aspired[version], m.versions.get(version)):
                return Load(m.name, version)
    for version in sorted(m.aspired, reverse=True):
        view = m.versions.get(version)
        if view is not None and view.state is S.READY:
            return Serve(m.name, version)
    aspired_serving = any(
        (view := m.versions.get(v)) is not None and view.state is S.SERVING for v in m.aspired
    )
    for version, view in sorted(m.versions.items()):
        if version in m.aspired:
            continue
        if view.state is S.READY or (view.state is S.SERVING and (aspired_serving or m.unload)):
            return Retire(m.name, version)
    return None
