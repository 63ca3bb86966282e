"""Is the fleet where it should be? Pure: targets, rollouts and node reports in, a verdict out.

For every model with a target (or a rollout), every live node is checked against the version
it should serve (:func:`baton.fleet.rollout.desired`):

- ``ok``: it serves that version, with the target's digest, as its default;
- ``converging``: it is loading it, or has not picked it up yet;
- ``diverged``: it serves that version with *other bytes* (another digest), the version failed
  there, or its repository lacks it (the node's note says why).

The fleet is ``diverged`` if any node is, else ``converging`` if any node is, else
``converged``. A node serving other bytes is never "fine".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from baton.fleet.rollout import FleetRollout, Target, desired

__all__ = ["Cell", "Verdict", "fleet_verdict", "grid"]


@dataclass(frozen=True, slots=True)
class Cell:
    """One node and one model."""

    node: str
    model: str
    want: Target | None
    serves: int | None  # the node's default version
    digest: str | None  # the digest of what it serves as that version
    state: str  # ok, converging, diverged, unmanaged
    why: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # converged, converging, diverged
    cells: tuple[Cell, ...] = ()
    diverged: tuple[str, ...] = ()  # "node/model: why"
    converging: tuple[str, ...] = field(default_factory=tuple)


def _cell(node: str, model: str, want: Target | None, report: Mapping) -> Cell:
    m = report.get("models", {}).get(model, {})
    serving = {int(v): d for v, d in m.get("serving", {}).items()}
    default = m.get("default")
    digest = serving.get(default) if default is not None else None
    if want is None:
        return Cell(node, model, None, default, digest, "unmanaged")
    failed = {int(v): r for v, r in m.get("failed", {}).items()}
    if default == want.version and digest == want.digest:
        return Cell(node, model, want, default, digest, "ok")
    if want.version in serving and serving[want.version] != want.digest:
        return Cell(node, model, want, default, digest, "diverged",
                    f"serves version {want.version} with other bytes")  # fmt: skip
    if want.version in failed:
        return Cell(node, model, want, default, digest, "diverged",
                    f"version {want.version} failed: {failed[want.version]}")  # fmt: skip
    if m.get("note"):
        return Cell(node, model, want, default, digest, "diverged", m["note"])
    loading = want.version in m.get("loading", [])
    return Cell(node, model, want, default, digest, "converging",
                f"loading version {want.version}" if loading else
                f"not yet on version {want.version}")  # fmt: skip


def fleet_verdict(
    targets: Mapping[str, Target],
    rollouts: Mapping[str, FleetRollout],
    reports: Mapping[str, Mapping],
) -> Verdict:
    """The verdict over the live nodes' ``reports`` (node → report)."""
    models = sorted(set(targets) | set(rollouts) | {
        name for report in reports.values() for name in report.get("models", {})
    })  # fmt: skip
    cells = []
    for node in sorted(reports):
        for model in models:
            want = desired(node, targets.get(model), rollouts.get(model))
            cells.append(_cell(node, model, want, reports[node]))
    diverged = tuple(f"{c.node}/{c.model}: {c.why}" for c in cells if c.state == "diverged")
    converging = tuple(f"{c.node}/{c.model}: {c.why}" for c in cells if c.state == "converging")
    running = any(not r.finished for r in rollouts.values())
    status = "diverged" if diverged else "converging" if converging or running else "converged"
    return Verdict(status, tuple(cells), diverged, converging)


def grid(
    verdict: Verdict, leader: str | None = None, rollouts: Mapping[str, FleetRollout] | None = None
) -> dict:
    """Nodes x models for the dashboard: what each node serves (version, digest) against what
    the fleet wants, each cell's state, which nodes have diverged, and each unfinished fleet
    rollout's wave."""
    models = sorted({c.model for c in verdict.cells})
    nodes: dict[str, dict] = {}
    for c in verdict.cells:
        node = nodes.setdefault(c.node, {"name": c.node, "diverged": False, "models": {}})
        node["diverged"] = node["diverged"] or c.state == "diverged"
        node["models"][c.model] = {
            "version": c.serves, "want": c.want.version if c.want else None,
            "digest": c.digest, "state": c.state, "why": c.why,
        }  # fmt: skip
    return {
        "status": verdict.status,
        "leader": leader,
        "diverged": list(verdict.diverged),
        "models": models,
        "nodes": [nodes[name] for name in sorted(nodes)],
        "rollouts": [_wave(r) for r in (rollouts or {}).values() if not r.finished],
    }


def _wave(r: FleetRollout) -> dict:
    return {
        "model": r.model, "stable": r.stable.version, "candidate": r.candidate.version,
        "status": r.status, "wave": r.wave + 1, "waves": len(r.sizes),
        "nodes": list(r.waved), "reason": r.reason,
    }  # fmt: skip
