"""Reading the fleet's desired state from etcd: each model's target and rollout record.

One malformed record (written by hand, by another version of Baton) is logged and skipped, never
fatal: the node, the coordinator and the CLI go on with the rest. Blocking calls.

    rollouts = read_rollouts(store)   # read first: a promotion writes both in one transaction,
    targets = read_targets(store)     # so a finished rollout is never seen with the old target
"""

from __future__ import annotations

import logging

from baton.fleet.rollout import FleetRollout, Target, from_json
from baton.fleet.store import FleetStore

__all__ = ["read_rollouts", "read_targets", "target_from_json"]

log = logging.getLogger("baton.fleet")


def target_from_json(doc: dict) -> Target:
    """A target key's JSON → :class:`Target`; ``ValueError`` (or ``KeyError``/``TypeError``)
    when it is not one."""
    version, digest = int(doc["version"]), doc["digest"]
    if version < 0 or not isinstance(digest, str) or not digest:
        raise ValueError(f"not a target: {doc!r}"[:200])
    return Target(version, digest)


def read_targets(store: FleetStore) -> dict[str, Target]:
    keys = store.keys
    targets = {}
    for key, doc in store.get_prefix(keys.models).items():
        model = keys.model_of(key)
        if model and key.endswith("/target"):
            try:
                targets[model] = target_from_json(doc)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring the target of %s: %s", model, exc)
    return targets


def read_rollouts(store: FleetStore) -> dict[str, tuple[FleetRollout, int]]:
    """model → (its rollout record, the record's mod revision for compare-and-set)."""
    keys = store.keys
    rollouts = {}
    for key, (doc, revision) in store.get_prefix_revisions(keys.rollouts).items():
        model = keys.model_of(key)
        if model:
            try:
                rollouts[model] = (from_json(doc), revision)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring the rollout record of %s: %s", model, exc)
    return rollouts
