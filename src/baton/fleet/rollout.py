"""A fleet rollout, as a pure state machine over the rollout record and the nodes' reports.

The coordinator calls :func:`step` whenever a node report or the rollout record changes, and on
a timer; it writes back what :func:`step` returns. Each node serves the candidate when it is
in ``waved``, else the stable version (:func:`desired`). Within a wave:

- nodes of the wave are added to ``waved`` so that at most ``max_loading`` are loading at once;
- a node takes the candidate at once, or through its own canary (``canary_steps``: its
  manager's weighted steps, with its own gates) when the rollout has them;
- the wave is complete when every live node of it serves the candidate's digest (as its
  default, so a node's canary has been promoted); from then on
  the gates are checked on the nodes' reports (error rate of the candidate's traffic, its p99
  against the stable version's on the other nodes); after ``interval`` seconds of passing gates
  the next wave starts, and after the last the rollout is promoted;
- a node that fails to load the candidate, or cannot get it (its repository lacks it or holds
  other bytes), or a failing gate, rolls the rollout back: every node serves the stable
  version again;
- a node that joined after the start serves the stable version until the last wave takes it;
- a node that disappears (its lease expired) no longer holds the wave up; but no wave passes
  before some node has served the candidate (if the first wave's nodes die while loading it,
  the rollout waits for an operator).

    r = start("m", Target(1, "d1"), Target(2, "d2"), order, sizes, now=t)
    r = step(r, reports, now=t + 1).rollout         # gates: r.gates
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

__all__ = [
    "FleetGates",
    "FleetRollout",
    "GateValues",
    "NodeModel",
    "Step",
    "Target",
    "VersionStats",
    "desired",
    "from_json",
    "gate_values",
    "operate",
    "start",
    "step",
    "to_json",
]

RUNNING, PAUSED = "RUNNING", "PAUSED"
PROMOTED, ROLLED_BACK, ABORTED = "PROMOTED", "ROLLED_BACK", "ABORTED"
FINISHED = frozenset({PROMOTED, ROLLED_BACK, ABORTED})


@dataclass(frozen=True, slots=True)
class Target:
    """A version of a model, and the SHA-256 of its manifest (what bytes it is)."""

    version: int
    digest: str


@dataclass(frozen=True, slots=True)
class VersionStats:
    requests: int = 0
    errors: int = 0
    p99: float | None = None


@dataclass(frozen=True, slots=True)
class NodeModel:
    """What one node reports of one model."""

    serving: Mapping[int, str] = field(default_factory=dict)  # SERVING version → digest
    failed: Mapping[int, str] = field(default_factory=dict)  # FAILED version → reason
    stats: Mapping[int, VersionStats] = field(default_factory=dict)
    note: str | None = None  # why the version the fleet wants of it is not offered there
    default: int | None = None  # the version unversioned requests go to


@dataclass(frozen=True, slots=True)
class FleetGates:
    max_error_rate: float | None = 0.01
    max_p99_ratio: float | None = 1.5
    min_requests: int = 50


@dataclass(frozen=True, slots=True)
class FleetRollout:
    model: str
    stable: Target
    candidate: Target
    order: tuple[str, ...]  # nodes in wave order, fixed at start
    sizes: tuple[int, ...]  # cumulative nodes per wave
    interval: float = 30.0
    max_loading: int = 1
    gates: FleetGates = FleetGates()
    status: str = RUNNING
    wave: int = 0
    waved: tuple[str, ...] = ()
    settled_at: float | None = None  # when the current wave had every live node converged
    reason: str | None = None
    proven: bool = False  # some node has served the candidate (only then can a wave pass)
    canary_steps: tuple[float, ...] = ()  # a node's own canary (weights in %), () = at once
    canary_interval: float = 30.0  # seconds per step of a node's canary

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True, slots=True)
class Step:
    rollout: FleetRollout
    note: str | None = None  # what happened, for the fleet audit log (None: nothing)


def start(
    model: str, stable: Target, candidate: Target, order: Sequence[str], sizes: Sequence[int],
    *, interval: float = 30.0, max_loading: int = 1, gates: FleetGates = FleetGates(),
    canary_steps: Sequence[float] = (), canary_interval: float = 30.0,
) -> FleetRollout:  # fmt: skip
    if not order:
        raise ValueError("the fleet has no live node to roll out to")
    if max_loading < 1:
        raise ValueError("max_loading must be at least 1")
    if gates.min_requests < 1:
        raise ValueError("the gates need at least 1 request to judge (min_requests)")
    if gates.max_p99_ratio is not None and not gates.max_p99_ratio > 0:
        raise ValueError("max_p99_ratio must be a positive number")
    if gates.max_error_rate is not None and not 0 <= gates.max_error_rate <= 1:
        raise ValueError("max_error_rate must be between 0 and 1")
    if canary_steps and (
        any(not 0 <= w <= 100 for w in canary_steps)
        or list(canary_steps) != sorted(canary_steps) or canary_steps[-1] != 100
    ):  # fmt: skip
        raise ValueError("canary steps are weights in % that grow to 100, e.g. 1,10,50,100")
    if canary_steps and candidate.version <= stable.version:
        raise ValueError(
            "a node's canary moves to a newer version; roll back without --canary-steps"
        )
    return FleetRollout(model, stable, candidate, tuple(order), tuple(sizes), interval,
                        max_loading, gates, canary_steps=tuple(float(w) for w in canary_steps),
                        canary_interval=canary_interval)  # fmt: skip


def desired(node: str, target: Target | None, rollout: FleetRollout | None) -> Target | None:
    """The version ``node`` should serve: the candidate while it is waved in a running or paused
    rollout, else the target (which a promotion has set to the candidate)."""
    if rollout is not None and not rollout.finished:
        return rollout.candidate if node in rollout.waved else rollout.stable
    return target


def step(r: FleetRollout, reports: Mapping[str, Mapping[str, NodeModel]], now: float) -> Step:
    """The rollout after looking at the live nodes' ``reports`` (node → model → report)."""
    if r.status != RUNNING:
        return Step(r)
    views = {node: models.get(r.model, NodeModel()) for node, models in reports.items()}
    for node in (n for n in r.waved if n in views):
        reason = views[node].failed.get(r.candidate.version)
        if reason is not None:
            why = f"version {r.candidate.version} failed on node {node}: {reason}"
            return _end(r, ROLLED_BACK, why)
        if views[node].note and views[node].serving.get(r.candidate.version) != r.candidate.digest:
            why = f"node {node} cannot take version {r.candidate.version}: {views[node].note}"
            return _end(r, ROLLED_BACK, why)

    def converged(node: str) -> bool:  # serves the candidate's bytes, to every caller
        view = views[node]
        candidate = r.candidate.version
        return view.serving.get(candidate) == r.candidate.digest and view.default == candidate

    size = r.sizes[min(r.wave, len(r.sizes) - 1)]
    wanted = [n for n in r.order[:size] if n in views]  # live nodes of this wave
    if r.wave == len(r.sizes) - 1:  # the last wave also takes nodes that joined since the start
        wanted += sorted(n for n in views if n not in r.order)
    loading = [n for n in r.waved if n in views and not converged(n)]
    waved = list(r.waved)
    for node in wanted:
        if node not in waved and len(loading) < r.max_loading:
            waved.append(node)
            loading.append(node)
    r = replace(r, waved=tuple(waved))
    if loading or any(n not in waved for n in wanted):
        return Step(r, f"wave {r.wave + 1}: loading on {', '.join(loading)}" if loading else None)
    if any(converged(n) for n in waved if n in views):
        r = replace(r, proven=True)
    if not r.proven:  # the waved nodes died before serving it (a crash while loading?): wait
        return Step(r)
    if r.settled_at is None:
        r = replace(r, settled_at=now)
    verdict = _gates(r, views)
    if verdict is not None:
        return _end(r, ROLLED_BACK, verdict)
    if now - r.settled_at < r.interval:
        return Step(r)
    if r.wave + 1 == len(r.sizes):
        return _end(r, PROMOTED, "every wave converged and passed its gates")
    return Step(replace(r, wave=r.wave + 1, settled_at=None),
                f"wave {r.wave + 1} passed; wave {r.wave + 2} starts")  # fmt: skip


@dataclass(frozen=True, slots=True)
class GateValues:
    """The candidate's traffic on the waved nodes, against the stable version's elsewhere."""

    requests: int = 0
    errors: int = 0
    p99_ratio: float | None = None  # worst candidate p99 / median stable p99

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


def gate_values(r: FleetRollout, reports: Mapping[str, Mapping[str, NodeModel]]) -> GateValues:
    """What the gates look at, from the live nodes' ``reports`` (node → model → report)."""
    return _values(r, {node: models.get(r.model, NodeModel()) for node, models in reports.items()})


def _values(r: FleetRollout, views: Mapping[str, NodeModel]) -> GateValues:
    candidate = [v.stats.get(r.candidate.version) for n, v in views.items() if n in r.waved]
    stable = [v.stats.get(r.stable.version) for n, v in views.items() if n not in r.waved]
    candidate = [s for s in candidate if s is not None]
    p99s = [s.p99 for s in candidate if s.p99]
    base = [s.p99 for s in stable
            if s is not None and s.p99 and s.requests >= r.gates.min_requests]  # fmt: skip
    ratio = max(p99s) / statistics.median(base) if p99s and base else None
    return GateValues(sum(s.requests for s in candidate), sum(s.errors for s in candidate), ratio)


def _gates(r: FleetRollout, views: Mapping[str, NodeModel]) -> str | None:
    """The reason the candidate's traffic fails a gate, or ``None`` (also while there is too
    little of it to judge)."""
    g, v = r.gates, _values(r, views)
    if v.requests < max(g.min_requests, 1):
        return None
    if g.max_error_rate is not None and v.errors / v.requests > g.max_error_rate:
        return (f"candidate error rate {v.errors / v.requests:.2%} over {v.requests} requests > "
                f"{g.max_error_rate:.2%}")  # fmt: skip
    if g.max_p99_ratio is not None and v.p99_ratio is not None and v.p99_ratio > g.max_p99_ratio:
        return (f"candidate p99 {v.p99_ratio:.2f} times the stable version's, over "
                f"{g.max_p99_ratio:g}")  # fmt: skip
    return None


def _end(r: FleetRollout, status: str, reason: str) -> Step:
    waved = r.waved if status == PROMOTED else ()
    return Step(replace(r, status=status, reason=reason, waved=waved), reason)


def operate(r: FleetRollout, action: str, now: float) -> FleetRollout:
    """An operator's ``pause``, ``resume``, ``promote`` or ``abort``; finished rollouts stay."""
    if r.finished:
        return r
    if action == "pause":
        return replace(r, status=PAUSED) if r.status == RUNNING else r
    if action == "resume":
        return replace(r, status=RUNNING, settled_at=None) if r.status == PAUSED else r
    if action == "promote":
        return replace(r, status=PROMOTED, reason="promoted by operator")
    if action == "abort":
        return replace(r, status=ABORTED, reason="aborted by operator", waved=())
    raise ValueError(f"unknown action {action!r}; use pause, resume, promote or abort")


def to_json(r: FleetRollout) -> dict:
    return {
        "model": r.model,
        "stable": {"version": r.stable.version, "digest": r.stable.digest},
        "candidate": {"version": r.candidate.version, "digest": r.candidate.digest},
        "order": list(r.order), "sizes": list(r.sizes), "interval": r.interval,
        "max_loading": r.max_loading,
        "gates": {"max_error_rate": r.gates.max_error_rate, "max_p99_ratio": r.gates.max_p99_ratio,
                  "min_requests": r.gates.min_requests},
        "status": r.status, "wave": r.wave, "waved": list(r.waved), "settled_at": r.settled_at,
        "reason": r.reason, "proven": r.proven, "canary_steps": list(r.canary_steps),
        "canary_interval": r.canary_interval,
    }  # fmt: skip


def from_json(doc: dict) -> FleetRollout:
    """A rollout record's JSON → :class:`FleetRollout`; ``ValueError`` (or ``KeyError``,
    ``TypeError``) when it is not a consistent one."""
    r = FleetRollout(
        doc["model"], Target(**doc["stable"]), Target(**doc["candidate"]), tuple(doc["order"]),
        tuple(doc["sizes"]), doc["interval"], doc["max_loading"], FleetGates(**doc["gates"]),
        doc["status"], doc["wave"], tuple(doc["waved"]), doc["settled_at"], doc["reason"],
        bool(doc.get("proven", False)), tuple(float(w) for w in doc.get("canary_steps", ())),
        float(doc.get("canary_interval", 30.0)),
    )  # fmt: skip
    if r.status not in FINISHED | {RUNNING, PAUSED}:
        raise ValueError(f"unknown rollout status {r.status!r}")
    if not r.sizes or not 0 <= r.wave < len(r.sizes) or r.max_loading < 1:
        raise ValueError(f"wave {r.wave} of sizes {r.sizes} (max loading {r.max_loading})")
    return r
