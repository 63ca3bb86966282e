"""Metric gates: does the candidate behave like the stable version? Pure functions over windows
of live statistics for the two versions side by side.

Three gates, each skipped when its threshold is ``None``:

- error rate: the candidate's share of failed requests must not exceed ``max_error_rate``;
- latency: candidate p99 ÷ stable p99 must not exceed ``max_p99_ratio`` (judged once both
  windows hold ``LATENCY_MIN_SAMPLES`` requests);
- output drift: the shift of the candidate's output mean, in units of the stable version's
  standard deviation, must not exceed ``max_mean_shift``; and where outputs are class scores,
  the total variation distance between the two versions' predicted-class distributions must
  not exceed ``max_class_drift`` (a constant shift leaves the argmax unchanged, so both run).

Nothing is judged before the candidate has ``min_requests`` requests ("insufficient"), except
that errors fail it early once there are more of them than ``max_error_rate`` would allow even
at ``min_requests``. The comparison gates also need ``min_requests`` on the stable side; when
the stable version gets no traffic (the 100 % step) only the error rate is judged.

Drift is judged against the larger of the configured threshold and the sampling noise of the
two windows' sizes (about three standard errors), so two samples of the same behaviour never
look like drift just because a window is small.

In shadow mode (a 0 % step) the candidate's answers are also compared with the stable
version's: the share that agree must be at least ``min_shadow_agreement``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "LATENCY_MIN_SAMPLES",
    "GateConfig",
    "GateVerdict",
    "OutputSummary",
    "WindowStats",
    "evaluate",
]

#: A p99 over fewer requests is little more than the maximum: one stall would decide it.
LATENCY_MIN_SAMPLES = 200


@dataclass(frozen=True, slots=True)
class GateConfig:
    max_error_rate: float | None = 0.01
    max_p99_ratio: float | None = 1.5
    max_class_drift: float | None = 0.1
    max_mean_shift: float | None = 0.5
    min_requests: int = 50
    min_shadow_agreement: float | None = 0.99  # share of shadow answers matching the stable


@dataclass(frozen=True, slots=True)
class OutputSummary:
    """What a window's outputs looked like: a numeric summary and, for classifiers, how often
    each class was predicted."""

    mean: float = 0.0
    std: float = 0.0
    classes: Mapping[int, int] | None = None
    n: int = 0  # output values summarised (0 = unknown: no sampling-noise allowance)


@dataclass(frozen=True, slots=True)
class WindowStats:
    requests: int = 0
    errors: int = 0
    p99: float | None = None
    outputs: OutputSummary | None = None
    compared: int = 0  # shadow answers compared with the stable version's
    agreed: int = 0
    max_abs_diff: float = 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """``failed`` with reasons, ``insufficient`` (not enough data yet), or passed."""

    failed: bool = False
    insufficient: bool = False
    reasons: tuple[str, ...] = ()
    values: Mapping[str, float] = field(default_factory=dict)
    gates: tuple[str, ...] = ()  # names of the failed gates: error_rate, latency, drift

    @staticmethod
    def passed(**values: float) -> GateVerdict:
        return GateVerdict(values=values)


def mean_shift_noise(n_stable: int, n_candidate: int) -> float:
    """Three standard errors of a standardized mean difference between two samples."""
    if not n_stable or not n_candidate:
        return 0.0
    return 3.0 * math.sqrt(1 / n_stable + 1 / n_candidate)


def class_drift_noise(a: Mapping[int, int], b: Mapping[int, int]) -> float:
    """A ~3-sigma bound on the total variation distance between two samples of one
    distribution over K classes: 1.5 · √K · √(1/n₁ + 1/n₂)."""
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return 0.0
    k = len(set(a) | set(b))
    return 1.5 * math.sqrt(k) * math.sqrt(1 / na + 1 / nb)


def class_drift(a: Mapping[int, int], b: Mapping[int, int]) -> float:
    """Total variation distance between two class histograms, in [0, 1]."""
    ta, tb = sum(a.values()), sum(b.values())
    if not ta or not tb:
        return 0.0
    return 0.5 * sum(abs(a.get(k, 0) / ta - b.get(k, 0) / tb) for k in set(a) | set(b))


def evaluate(stable: WindowStats, candidate: WindowStats, cfg: GateConfig) -> GateVerdict:
    values: dict[str, float] = {"candidate_error_rate": candidate.error_rate}
    reasons: list[str] = []
    gates: list[str] = []
    judged = candidate.requests >= cfg.min_requests
    # Comparisons need both sides; at 100 % the stable version gets no traffic, and then only
    # the candidate's own error rate is judged.
    enough = judged and stable.requests >= cfg.min_requests
    if cfg.max_error_rate is not None:
        early = candidate.errors > cfg.max_error_rate * cfg.min_requests
        if (judged or early) and candidate.error_rate > cfg.max_error_rate:
            gates.append("error_rate")
            reasons.append(
                f"error rate {candidate.error_rate:.2%} > {cfg.max_error_rate:.2%} "
                f"({candidate.errors} of {candidate.requests})"
            )
    latency_judged = min(candidate.requests, stable.requests) >= max(
        cfg.min_requests, LATENCY_MIN_SAMPLES
    )
    if latency_judged and cfg.max_p99_ratio is not None and candidate.p99 and stable.p99:
        ratio = values["p99_ratio"] = candidate.p99 / stable.p99
        if ratio > cfg.max_p99_ratio:
            gates.append("latency")
            reasons.append(f"p99 {ratio:.2f}x the stable version's > {cfg.max_p99_ratio:.2f}x")
    if enough and candidate.outputs and stable.outputs:
        s, c = stable.outputs, candidate.outputs
        if cfg.max_class_drift is not None and s.classes and c.classes:
            drift = values["class_drift"] = class_drift(s.classes, c.classes)
            limit = max(cfg.max_class_drift, class_drift_noise(s.classes, c.classes))
            if drift > limit:
                gates.append("drift")
                reasons.append(f"predicted classes drifted {drift:.3f} > {limit:.3f}")
        if cfg.max_mean_shift is not None:
            shift = values["mean_shift"] = abs(c.mean - s.mean) / max(s.std, 1e-12)
            limit = max(cfg.max_mean_shift, mean_shift_noise(s.n, c.n))
            if shift > limit:
                gates.append("drift")
                reasons.append(f"output mean shifted {shift:.2f} sd > {limit:.2f} sd")
    if judged and cfg.min_shadow_agreement is not None and candidate.compared:
        agreement = values["shadow_agreement"] = candidate.agreed / candidate.compared
        values["shadow_max_abs_diff"] = candidate.max_abs_diff
        if agreement < cfg.min_shadow_agreement:
            gates.append("shadow_agreement")
            reasons.append(
                f"shadow answers agreed {agreement:.2%} < {cfg.min_shadow_agreement:.2%} "
                f"(max abs diff {candidate.max_abs_diff:.4g})"
            )
    if reasons:
        return GateVerdict(
            failed=True, reasons=tuple(reasons), values=values, gates=tuple(dict.fromkeys(gates))
        )
    return GateVerdict(insufficient=not judged, values=values)
