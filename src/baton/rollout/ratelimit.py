"""Update rate limits: when may a model swap to a newly arrived version?

Pure decisions. At most one swap per model per ``min_interval`` seconds; a burst of new versions
is coalesced to the newest; with ``defer_while_busy``, a swap waits while the model's load is
above ``busy_threshold``, but never longer than ``max_defer`` seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["SwapDecision", "SwapLimits", "coalesce", "swap_decision"]


@dataclass(frozen=True, slots=True)
class SwapLimits:
    min_interval: float = 0.0
    defer_while_busy: bool = False
    busy_threshold: float = float("inf")  # e.g. requests in flight
    max_defer: float = 60.0


@dataclass(frozen=True, slots=True)
class SwapDecision:
    go: bool
    wait: float = 0.0  # seconds until it is worth asking again
    reason: str = ""


def swap_decision(
    now: float, last_swap: float | None, pending_since: float, load: float, limits: SwapLimits
) -> SwapDecision:
    if last_swap is not None and now - last_swap < limits.min_interval:
        wait = limits.min_interval - (now - last_swap)
        return SwapDecision(False, wait, f"rate limit: one swap per {limits.min_interval:g} s")
    if limits.defer_while_busy and load > limits.busy_threshold:
        deferred = now - pending_since
        if deferred < limits.max_defer:
            return SwapDecision(
                False,
                min(1.0, limits.max_defer - deferred),
                f"busy: load {load:g} > {limits.busy_threshold:g}",
            )
        return SwapDecision(True, reason=f"busy, but deferred the maximum {limits.max_defer:g} s")
    return SwapDecision(True)


def coalesce(pending: Iterable[int]) -> int | None:
    """Of several versions waiting to be swapped in, only the newest is worth loading."""
    return max(pending, default=None)
