"""Update rate limits: when may a model start swapping to a newly arrived version?

Pure decisions on a fake-able clock. At most one swap per model per ``min_interval`` seconds; a
burst of new versions is coalesced to the newest (the ones in between are never loaded); with
``busy_threshold`` set, a swap waits while the model serves more requests per second than that,
but never longer than ``max_defer`` seconds.

The manager keeps one :class:`UpdateGate` per model and calls :func:`limit_update` whenever it
reconciles; the gate's ``admitted`` version bounds which versions the version policy may see.
Operator actions (pin, rollback, ``rollout start``) are deliberate and bypass the limiter.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

__all__ = [
    "GateStep",
    "LoadMeter",
    "RateLimitDecision",
    "SwapDecision",
    "SwapLimits",
    "UpdateGate",
    "coalesce",
    "limit_update",
    "swap_decision",
]


@dataclass(frozen=True, slots=True)
class SwapLimits:
    min_interval: float = 0.0  # seconds between two swaps of one model
    busy_threshold: float | None = None  # requests per second; None = never defer for load
    max_defer: float = 60.0  # the longest a swap waits for load to fall

    @property
    def active(self) -> bool:
        return self.min_interval > 0 or self.busy_threshold is not None


@dataclass(frozen=True, slots=True)
class SwapDecision:
    go: bool
    wait: float = 0.0  # seconds until it is worth asking again
    reason: str = ""
    kind: str = ""  # "rate_limit", "busy", "measuring", or "" for a plain go


def swap_decision(
    now: float,
    last_swap: float | None,
    pending_since: float,
    load: float | None,
    limits: SwapLimits,
) -> SwapDecision:
    """May a swap start now? ``load`` is requests per second, ``None`` while not yet measured."""
    if last_swap is not None and now - last_swap < limits.min_interval:
        wait = limits.min_interval - (now - last_swap)
        return SwapDecision(
            False, wait, f"rate limit: one swap per {limits.min_interval:g} s", "rate_limit"
        )
    if limits.busy_threshold is None:
        return SwapDecision(True)
    deferred = now - pending_since
    if deferred >= limits.max_defer:
        return SwapDecision(
            True, reason=f"deferred the maximum {limits.max_defer:g} s while busy", kind="busy"
        )
    if load is None:
        return SwapDecision(False, min(1.0, limits.max_defer - deferred), "measuring load",
                            "measuring")  # fmt: skip
    if load > limits.busy_threshold:
        return SwapDecision(
            False,
            min(1.0, limits.max_defer - deferred),
            f"busy: {load:.0f} requests/s > {limits.busy_threshold:g}",
            "busy",
        )
    return SwapDecision(True)


def coalesce(pending: Collection[int]) -> int | None:
    """Of several versions waiting to be swapped in, only the newest is worth loading."""
    return max(pending, default=None)


@dataclass(frozen=True, slots=True)
class UpdateGate:
    """One model's limiter state. ``admitted``: the newest version the policy may see."""

    admitted: int | None = None
    pending_since: float | None = None
    last_swap: float | None = None
    announced: tuple[int, str] | None = None  # (version, kind) of the last deferral reported

    def swapped(self, now: float) -> UpdateGate:
        return replace(self, last_swap=now)


@dataclass(frozen=True, slots=True)
class RateLimitDecision:
    """What a ``rate_limit`` event reports: ``admitted`` or ``deferred``, for ``version``."""

    decision: str
    version: int
    reason: str
    skipped: tuple[int, ...] = ()  # coalesced away: newer than the last admitted, never loaded
    waited: float = 0.0
    retry_in: float = 0.0


@dataclass(frozen=True, slots=True)
class GateStep:
    gate: UpdateGate
    event: RateLimitDecision | None = None
    wait: float | None = None  # reconcile again after this many seconds


def limit_update(
    gate: UpdateGate,
    offered: Collection[int],
    serving: bool,
    now: float,
    load: float | None,
    limits: SwapLimits,
) -> GateStep:
    """Admit the newest of the ``offered`` versions, or say why and for how long it waits.

    The first offer, and any offer while nothing serves, is admitted at once: there is nothing
    to swap away from. Without active limits every version is admitted silently.
    """
    pending = [v for v in offered if gate.admitted is None or v > gate.admitted]
    newest = coalesce(pending)
    if newest is None:
        return GateStep(replace(gate, pending_since=None, announced=None))
    since = gate.pending_since if gate.pending_since is not None else now
    first = gate.admitted is None
    decision = SwapDecision(True) if first or not serving else None
    if decision is None:
        decision = swap_decision(now, gate.last_swap, since, load, limits)
    if decision.go:
        admitted = UpdateGate(newest, None, gate.last_swap, None)
        if not limits.active or first:
            return GateStep(admitted)
        reason = decision.reason or ("nothing serving" if not serving else "within limits")
        skipped = tuple(sorted(v for v in pending if v != newest))
        return GateStep(admitted, RateLimitDecision("admitted", newest, reason, skipped,
                                                    now - since))  # fmt: skip
    waiting = replace(gate, pending_since=since, announced=(newest, decision.kind))
    event = None
    if decision.kind != "measuring" and gate.announced != waiting.announced:
        skipped = tuple(sorted(v for v in pending if v != newest))
        event = RateLimitDecision("deferred", newest, decision.reason, skipped, now - since,
                                  decision.wait)  # fmt: skip
    return GateStep(waiting, event, decision.wait)


class LoadMeter:
    """Requests per second per model, from a running count sampled at least ``period`` apart.

    The first sample gives ``None`` (no rate yet); :meth:`forget` drops a model's samples so a
    rate is never averaged over a long quiet spell.
    """

    def __init__(self, period: float = 0.5) -> None:
        self._period = period
        self._samples: dict[str, tuple[float, int, float | None]] = {}

    def rate(self, key: str, now: float, count: int) -> float | None:
        t0, n0, rate = self._samples.get(key, (now, count, None))
        if now - t0 >= self._period:
            rate, t0, n0 = max(0, count - n0) / (now - t0), now, count
        self._samples[key] = (t0, n0, rate)
        return rate

    def forget(self, key: str) -> None:
        self._samples.pop(key, None)
