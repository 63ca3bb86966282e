"""Rollout decisions on a model's record: pure functions the manager applies.

- :func:`rollout_on_serve`: when a version becomes SERVING, does a rollout start (one the API
  asked for, or ``rollout.mode: canary`` meeting a newer version)?
- :func:`finish`: a finished rollout's consequences — promoted: the candidate becomes the
  default (pinned if the version policy would not choose it); rolled back or aborted: the
  candidate is rejected (until its files change, or an operator asks for it by name), so the
  policy falls back to the stable one and the candidate is retired.
- :func:`describe`: the data a ``rollout`` event carries — enough to resume after a restart.
- :func:`sync_windows`: live statistics windows on exactly the two versions of a rollout;
  :func:`rollout_windows` reads them.
- :func:`check_when_due`: the gate check of a running rollout, every ``period`` seconds.
"""

from __future__ import annotations

from dataclasses import asdict

from baton.control import policy
from baton.control.operator import require_version
from baton.control.records import ModelRecord, RolloutRequest
from baton.errors import Conflict
from baton.rollout import controller
from baton.rollout.gates import GateConfig, WindowStats
from baton.rollout.schedule import Rollout, RolloutPlan, RolloutStatus
from baton.rollout.window import VersionWindow

__all__ = [
    "check_when_due",
    "describe",
    "finish",
    "request_from",
    "request_rollout",
    "rollout_on_serve",
    "rollout_windows",
    "sync_windows",
]


def request_rollout(
    m: ModelRecord, candidate: int, plan: RolloutPlan | None, gates: GateConfig | None
) -> RolloutRequest:
    """An operator's request to roll ``m`` out to ``candidate`` (the model's rollout settings
    fill in what is not given); raises Conflict or NotFound when it cannot be."""
    if m.rollout is not None:
        raise Conflict(f"model '{m.name}' already has a rollout to version {m.rollout.candidate}")
    require_version(m, candidate)
    if candidate == m.default_version():
        raise Conflict(f"version {candidate} of '{m.name}' is already the default")
    cfg = m.settings.rollout
    return RolloutRequest(candidate, plan or cfg.plan(), gates or cfg.gates.config())


def rollout_on_serve(
    m: ModelRecord, version: int, before: int | None, now: float
) -> tuple[Rollout, GateConfig] | None:
    """The rollout (and its gates) that starts as ``version`` becomes SERVING, if any."""
    request = m.rollout_request
    if request is not None and request.candidate == version and m.rollout is None:
        stable = request.stable if request.stable is not None else before
        if stable is None or stable == version:
            return None
        status = RolloutStatus.PAUSED if request.paused else RolloutStatus.RUNNING
        return Rollout(m.name, stable, version, request.plan, request.step, status, now), (
            request.gates
        )
    cfg = m.settings.rollout
    if (
        cfg.mode != "canary"
        or m.rollout is not None
        or before is None
        or m.pinned is not None
        or version <= before
        or version not in m.aspired()
    ):
        return None
    return Rollout.start(m.name, before, version, cfg.plan(), now), cfg.gates.config()


def finish(m: ModelRecord, rollout: Rollout) -> None:
    """Apply a finished rollout to the record (the caller rebuilds the map and publishes)."""
    m.rollout = None
    m.rollout_request = None
    m.rollout_due = None
    m.last_rollout = rollout
    if rollout.status is RolloutStatus.PROMOTED:
        # The candidate must win afterwards: any earlier pin gives way to it, and it is pinned
        # itself only when the version policy alone would not choose it.
        chosen = policy.select_aspired(m.offered_versions(), m.settings.version_policy)
        m.pinned = None if rollout.candidate in chosen else rollout.candidate
    else:
        files = m.available.get(rollout.candidate)
        if files is not None:
            m.rejected[rollout.candidate] = files.fingerprint


def describe(rollout: Rollout, gates: GateConfig) -> dict:
    return {
        "stable": rollout.stable,
        "candidate": rollout.candidate,
        "status": rollout.status.value,
        "step": rollout.step,
        "weight": rollout.weight,
        "steps": list(rollout.plan.steps),
        "interval": rollout.plan.interval,
        "gates": asdict(gates),
    }


def request_from(data: dict) -> RolloutRequest:
    """The request that resumes a rollout described by :func:`describe`."""
    return RolloutRequest(
        candidate=data["candidate"],
        plan=RolloutPlan(tuple(data["steps"]), data["interval"]),
        gates=GateConfig(**data["gates"]),
        stable=data["stable"],
        step=data["step"],
        paused=data["status"] == RolloutStatus.PAUSED,
    )


def sync_windows(m: ModelRecord, reset: bool = False) -> None:
    """Give the two versions of a running rollout live statistics windows (fresh ones per step
    with ``reset``), and take them from every other version."""
    involved = {m.rollout.stable, m.rollout.candidate} if m.rollout else set()
    for v, record in m.versions.items():
        handle = record.handle
        if handle is None:
            continue
        if v not in involved:
            handle.window = None
        elif handle.window is None or reset:
            handle.window = VersionWindow()


def rollout_windows(m: ModelRecord) -> tuple[WindowStats | None, WindowStats | None]:
    """Live statistics of the rollout's stable and candidate versions (``None`` for a version
    without a window: not serving yet, or no rollout)."""
    r = m.rollout
    if r is None:
        return None, None
    stats = []
    for v in (r.stable, r.candidate):
        record = m.versions.get(v)
        window = record.handle.window if record and record.handle else None
        stats.append(window.stats() if window is not None else None)
    return stats[0], stats[1]


def check_when_due(m: ModelRecord, now: float, period: float) -> controller.RolloutCheck | None:
    """Check a running rollout's gates if ``m.rollout_due`` has come (the first check is due
    one ``period`` after the rollout starts or resumes); ``None`` when nothing was checked.
    Records the verdict and the next due time; the caller applies a changed rollout."""
    rollout = m.rollout
    if rollout is None or rollout.status is not RolloutStatus.RUNNING:
        m.rollout_due = None
        return None
    if m.rollout_due is None:
        m.rollout_due = now + period
    if now < m.rollout_due:
        return None
    stable, candidate = rollout_windows(m)
    step = controller.check(rollout, stable, candidate, m.rollout_gates, now)
    if step.verdict is not None:
        m.last_verdict = step.verdict
    m.rollout_due = now + period
    return step
