"""What an operator does to a fleet, as blocking calls on its store (``baton fleet`` uses them).

    store = FleetStore.connect("etcd://127.0.0.1:2379", "prod")
    state = fleet_state(store)                                   # nodes, targets, verdict
    set_target(store, "fraud", 7)                                # every node: version 7 now
    start_rollout(store, "fraud", 8, RolloutOptions(waves="1,50%,100%"))
    operate_rollout(store, "fraud", "pause")                     # resume, promote, abort

A version is named by number; its digest (the SHA-256 of its manifest, i.e. which bytes) is
taken from what the live nodes report their repositories hold, and must be the same on every
node that has it. Every write is compare-and-set, so two operators (or an operator and the
coordinator) never overwrite each other; each action is a fleet audit entry. Refusals are
:class:`FleetError` with the reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from baton.fleet.coordinator import audit_entry, node_models, target_doc
from baton.fleet.records import read_rollouts, read_targets
from baton.fleet.rollout import (
    PAUSED,
    PROMOTED,
    RUNNING,
    FleetGates,
    FleetRollout,
    Target,
    from_json,
    operate,
    start,
    to_json,
)
from baton.fleet.store import FleetStore
from baton.fleet.verdict import Verdict, fleet_verdict
from baton.fleet.waves import node_order, parse_waves, wave_sizes

__all__ = [
    "FleetError",
    "FleetState",
    "RolloutOptions",
    "fleet_audit",
    "fleet_state",
    "operate_rollout",
    "set_target",
    "start_rollout",
]


class FleetError(Exception):
    """An action the fleet refuses; ``str(err)`` says why."""


@dataclass(frozen=True)
class FleetState:
    """The fleet as read at ``time``: live nodes' reports, targets, rollouts, the verdict."""

    time: float
    leader: str | None
    reports: dict[str, dict]
    targets: dict[str, Target]
    rollouts: dict[str, FleetRollout]
    verdict: Verdict


@dataclass(frozen=True)
class RolloutOptions:
    waves: str = "1,50%,100%"
    interval: float = 30.0
    max_loading: int = 1
    gates: FleetGates = field(default_factory=FleetGates)
    canary_steps: tuple[float, ...] = ()  # each node's own canary; () = each swaps at once
    canary_interval: float = 30.0


def fleet_state(store: FleetStore) -> FleetState:
    keys = store.keys
    reports = {
        key[len(keys.nodes) :]: doc
        for key, doc in store.get_prefix(keys.nodes).items()
        if isinstance(doc, dict) and isinstance(doc.get("models", {}), dict)
    }
    rollouts = {model: r for model, (r, _) in read_rollouts(store).items()}
    targets = read_targets(store)
    holder, _ = store.get(keys.election)
    leader = holder.get("node") if isinstance(holder, dict) else None
    return FleetState(time.time(), leader, reports, targets, rollouts,
                      fleet_verdict(targets, rollouts, reports))  # fmt: skip


def version_digest(reports: dict[str, dict], model: str, version: int) -> str:
    """The digest of ``model`` version ``version`` as the live nodes' repositories hold it."""
    digests = {}
    for node, report in reports.items():
        m = report.get("models", {}).get(model, {})
        digest = m.get("available", {}).get(str(version)) or m.get("serving", {}).get(str(version))
        if digest:
            digests.setdefault(digest, []).append(node)
    if not digests:
        if not reports:
            raise FleetError("no live node reports to the fleet: is any node running?")
        raise FleetError(f"no live node has version {version} of {model} in its repository "
                         "(is it published, with its manifest?)")  # fmt: skip
    if len(digests) > 1:
        views = "; ".join(f"{d[:12]} on {', '.join(sorted(n))}" for d, n in digests.items())
        raise FleetError(f"nodes hold different bytes for {model} version {version}: {views}")
    return next(iter(digests))


def _serving_target(reports: dict[str, dict], model: str) -> Target:
    """What every live node serves of ``model`` now (the rollout's stable version when the
    model has no target yet); refused when the nodes do not agree."""
    served = set()
    for report in reports.values():
        m = report.get("models", {}).get(model)
        if m is None or m.get("default") is None:
            continue
        version = int(m["default"])
        served.add(Target(version, m.get("serving", {}).get(str(version)) or ""))
    if len(served) != 1 or not next(iter(served)).digest:
        what = ", ".join(f"v{t.version}" for t in sorted(served, key=lambda t: t.version))
        raise FleetError(f"{model} has no target and the nodes do not serve one version of it "
                         f"({what or 'nothing'}): set one first with "
                         f"'baton fleet target {model} VERSION'")  # fmt: skip
    return served.pop()


def _rollout_record(store: FleetStore, model: str) -> tuple[FleetRollout | None, int]:
    """The model's rollout record and its revision ((None, 0) without one; a malformed record
    reads as none, at its revision, so it can be overwritten)."""
    key = store.keys.rollout(model)
    found = store.get_prefix_revisions(key).get(key)
    if found is None:
        return None, 0
    try:
        return from_json(found[0]), found[1]
    except (KeyError, TypeError, ValueError):
        return None, found[1]


def set_target(store: FleetStore, model: str, version: int, by: str = "operator",
               digest: str | None = None) -> Target:  # fmt: skip
    """Every node of the fleet serves ``version`` of ``model`` (at once; for waves use
    :func:`start_rollout`). Refused while a rollout of the model is under way. The version's
    ``digest`` is what the live nodes report, unless given (a fleet with no node yet)."""
    rollout, rollout_revision = _rollout_record(store, model)
    if rollout is not None and not rollout.finished:
        raise FleetError(f"a rollout of {model} is under way (v{rollout.stable.version} → "
                         f"v{rollout.candidate.version}): promote or abort it first")  # fmt: skip
    if digest is None:
        digest = version_digest(fleet_state(store).reports, model, version)
    target = Target(version, digest)
    key = store.keys.target(model)
    found = store.get_prefix_revisions(key).get(key)
    audit = audit_entry(store, "target", model, f"target set to version {version} by {by}",
                        version=version, digest=target.digest)  # fmt: skip
    if not store.cas(key, target_doc(target, by), found[1] if found else 0, dict([audit]),
                     unchanged={store.keys.rollout(model): rollout_revision}):  # fmt: skip
        raise FleetError(f"the target of {model} changed meanwhile; look and try again")
    return target


def start_rollout(
    store: FleetStore, model: str, version: int, options: RolloutOptions, by: str = "operator"
) -> FleetRollout:
    """Start moving the fleet's ``model`` to ``version`` in waves (the elected coordinator
    drives it). Refused while another rollout of the model runs, when the version is what the
    fleet already serves, or when nodes hold different bytes for it."""
    _, target_revision = store.get(store.keys.target(model))  # first: a later change fails the CAS
    state = fleet_state(store)
    existing, revision = _rollout_record(store, model)
    if existing is not None and not existing.finished:
        raise FleetError(f"a rollout of {model} to v{existing.candidate.version} is already "
                         f"{existing.status.lower()}: abort it first")  # fmt: skip
    try:
        sizes_spec = parse_waves(options.waves)
    except ValueError as exc:
        raise FleetError(str(exc)) from None
    stable = state.targets.get(model) or _serving_target(state.reports, model)
    candidate = Target(version, version_digest(state.reports, model, version))
    if candidate == stable:
        raise FleetError(f"the fleet already serves {model} version {version}")
    order = node_order({node: r.get("zone") for node, r in state.reports.items()})
    try:
        rollout = start(model, stable, candidate, order, wave_sizes(sizes_spec, len(order)),
                        interval=options.interval, max_loading=options.max_loading,
                        gates=options.gates, canary_steps=options.canary_steps,
                        canary_interval=options.canary_interval)  # fmt: skip
    except ValueError as exc:
        raise FleetError(str(exc)) from None
    also = {}
    if model not in state.targets:  # the stable version becomes the target: nodes fall back to it
        also[store.keys.target(model)] = target_doc(stable, by)
    key, doc = audit_entry(store, "rollout", model,
                           f"rollout v{stable.version} → v{version} started by {by} over waves "
                           f"{'/'.join(map(str, rollout.sizes))} of {len(order)} nodes",
                           waves=list(rollout.sizes), order=list(order))  # fmt: skip
    also[key] = doc
    if not store.cas(store.keys.rollout(model), to_json(rollout), revision, also,
                     unchanged={store.keys.target(model): target_revision}):  # fmt: skip
        raise FleetError(f"the rollout or target of {model} changed meanwhile; look and try again")
    return rollout


def operate_rollout(store: FleetStore, model: str, action: str, by: str = "operator"
                    ) -> tuple[FleetRollout, str]:  # fmt: skip
    """``pause``, ``resume``, ``promote`` or ``abort`` the rollout of ``model``: (the rollout
    after the action, one line saying what changed)."""
    rollout, revision = _rollout_record(store, model)
    if rollout is None:
        raise FleetError(f"{model} has no fleet rollout")
    if rollout.finished:
        raise FleetError(f"the rollout of {model} to v{rollout.candidate.version} already "
                         f"ended: {rollout.status.lower()}")  # fmt: skip
    if action == "pause" and rollout.status == PAUSED:
        raise FleetError(f"the rollout of {model} is already paused")
    if action == "resume" and rollout.status == RUNNING:
        raise FleetError(f"the rollout of {model} is running, not paused")
    try:
        after = operate(rollout, action, time.time())
    except ValueError as exc:
        raise FleetError(str(exc)) from None
    also = {}
    if after.status == PROMOTED:
        also[store.keys.target(model)] = target_doc(after.candidate, by)
    change = {
        "pause": "paused: no further node takes the candidate",
        "resume": "resumed",
        "promote": f"promoted: every node now serves v{after.candidate.version}",
        "abort": f"aborted: every node returns to v{after.stable.version}",
    }[action]
    key, doc = audit_entry(store, "rollout", model, f"rollout {change} (by {by})",
                           status=after.status)  # fmt: skip
    also[key] = doc
    if not store.cas(store.keys.rollout(model), to_json(after), revision, also):
        raise FleetError(f"the rollout of {model} changed meanwhile; look and try again")
    return after, f"{model}: rollout v{after.stable.version} → v{after.candidate.version} {change}"


def fleet_audit(store: FleetStore, model: str | None = None, limit: int = 50) -> list[dict]:
    """The newest ``limit`` fleet audit entries (oldest first), of one model or all."""
    entries = [doc for _, doc in sorted(store.get_prefix(store.keys.audits).items())
               if isinstance(doc, dict)]  # fmt: skip
    if model is not None:
        entries = [e for e in entries if e.get("model") == model]
    return entries[-limit:] if limit > 0 else []


def node_views(state: FleetState) -> dict[str, dict]:
    """Each live node's models as the rollout state machine reads them (for gate values)."""
    return {node: node_models(report) for node, report in state.reports.items()}
