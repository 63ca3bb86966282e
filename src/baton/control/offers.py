"""Applying sources' offers to the manager's records.

Each source publishes its complete offer; :func:`apply_offers` merges them (a later source wins
for a model both offer) into the records: settings, available versions, configuration errors.
A model no source offers any more is marked not offered (the policy then retires it), and
forgotten once nothing of it is loaded. A model offered without settings (its model.yaml was
never valid) is not ``configured``: it aspires to nothing and loads nothing. Loaded versions
are immutable: a change to their files is reported and ignored. Unloaded versions whose files
are gone are forgotten, so a model that goes through thousands of versions keeps no record of
each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from baton.control.lifecycle import VersionState
from baton.control.records import ModelRecord, RolloutRequest
from baton.sources.base import ModelSpec

__all__ = ["apply_offers", "forget_if_gone"]

S = VersionState


def apply_offers(
    models: dict[str, ModelRecord],
    offers: Iterable[Mapping[str, ModelSpec]],
    restored: dict[str, RolloutRequest],
    publish: Callable[..., object],
) -> set[str]:
    """Update ``models`` from every source's offer; returns the models to reconcile.
    ``restored`` rollouts (from the audit log) are attached to their model when it appears."""
    merged: dict[str, ModelSpec] = {}
    for specs in offers:
        merged.update(specs)
    for name, spec in merged.items():
        m = models.setdefault(name, ModelRecord(name))
        if name in restored and m.rollout is None:
            m.rollout_request = restored.pop(name)
        if spec.config_error != m.config_error:
            if spec.config_error:
                state = "invalid" if spec.settings is None else "kept_last_valid"
                publish("config_error", name, reason="bad_config", message=spec.config_error,
                        state=state)  # fmt: skip
            else:
                publish("config_error", name, state="cleared")
        if spec.settings is not None:
            m.settings = spec.settings
        m.configured = spec.settings is not None
        m.available = dict(spec.versions)
        m.config_error, m.offered = spec.config_error, True
        # A record keeps the fingerprint it was loaded from: for FAILED/UNLOADED versions the
        # policy compares it with the offer to decide on a retry; loaded ones are immutable.
        for v, r in m.versions.items():
            files = m.available.get(v)
            changed = files is not None and files.fingerprint != r.files.fingerprint
            if changed and r.state in (S.READY, S.SERVING):
                publish("ignored_change", name, version=v,
                        message="files of a loaded version changed; versions are immutable, "
                        "publish a new version number instead")  # fmt: skip
        for v in [v for v, r in m.versions.items()
                  if r.state is S.UNLOADED and v not in m.available]:  # fmt: skip
            del m.versions[v]
    for name, m in list(models.items()):
        if name not in merged:
            m.offered = False
            forget_if_gone(models, m)
    return set(merged) | set(models)


def forget_if_gone(models: dict[str, ModelRecord], m: ModelRecord) -> None:
    """Drop ``m`` from ``models`` once no source offers it and nothing of it is loaded."""
    gone = all(r.state in (S.UNLOADED, S.FAILED) for r in m.versions.values())
    if not m.offered and gone and models.get(m.name) is m:
        del models[m.name]
