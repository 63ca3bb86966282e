"""The update rate limiter applied to a model's record (see :mod:`baton.rollout.ratelimit`).

:func:`limit_updates` admits, or holds back, versions newer than the last admitted one; it
updates the record's gate and returns the decision to report (if any) and when to look again.
"""

from __future__ import annotations

from baton.control.records import ModelRecord
from baton.rollout.ratelimit import LoadMeter, RateLimitDecision, limit_update

__all__ = ["limit_updates"]


def limit_updates(
    m: ModelRecord, now: float, meter: LoadMeter
) -> tuple[RateLimitDecision | None, float | None]:
    """(the decision to publish as a ``rate_limit`` event, seconds until the next look)."""
    limits = m.settings.update_limits.limits()
    load = None
    if limits.busy_threshold is not None:
        served = sum(r.handle.served for r in m.versions.values() if r.handle is not None)
        load = meter.rate(m.name, now, served)
    step = limit_update(m.updates, m.offered_versions(), bool(m.serving()), now, load, limits)
    m.updates = step.gate
    if step.wait is None:
        meter.forget(m.name)
    return step.event, step.wait
