"""What the manager knows of each model and version, and the views derived from it.

Records are mutated only by :class:`baton.control.manager.Manager`; everything else reads them (the
admin API, the repository extension, the data plane's metadata).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from baton.artifacts.files import VersionFiles
from baton.control import policy
from baton.control.lifecycle import VersionState
from baton.rollout.gates import GateConfig
from baton.rollout.ratelimit import UpdateGate
from baton.rollout.schedule import Rollout, RolloutPlan
from baton.serving.handle import VersionHandle
from baton.serving.serving_map import Canary
from baton.settings import ModelSettings
from baton.types import Signature

__all__ = ["ModelRecord", "RolloutRequest", "VersionRecord"]

S = VersionState


@dataclass(eq=False)
class VersionRecord:
    """Everything the manager knows of one version; mutated only by the manager."""

    version: int
    files: VersionFiles
    state: VersionState | None = None
    reason: str | None = None
    message: str | None = None
    handle: VersionHandle | None = None
    signature: Signature | None = None
    platform: str | None = None
    since: float = field(default_factory=time.time)
    files_bytes: int = 0
    memory: int | None = None  # footprint measured while it loaded


@dataclass(frozen=True, slots=True)
class RolloutRequest:
    """A rollout asked for (by the API, or restored after a restart) that starts once
    ``candidate`` is SERVING: from ``stable`` (default: the version serving then), at ``step``."""

    candidate: int
    plan: RolloutPlan
    gates: GateConfig
    stable: int | None = None
    step: int = 0
    paused: bool = False


@dataclass(eq=False)
class ModelRecord:
    name: str
    settings: ModelSettings = field(default_factory=ModelSettings)
    available: dict[int, VersionFiles] = field(default_factory=dict)
    versions: dict[int, VersionRecord] = field(default_factory=dict)
    pinned: int | None = None
    labels: dict[str, int] = field(default_factory=dict)  # admin moves over model.yaml labels
    disabled: bool = False
    offered: bool = True
    config_error: str | None = None
    history: list[int] = field(default_factory=list)  # default versions, oldest first
    rollout: Rollout | None = None  # running or paused; cleared when it finishes
    rollout_gates: GateConfig = field(default_factory=GateConfig)
    rollout_request: RolloutRequest | None = None
    rejected: dict[int, str] = field(default_factory=dict)  # rolled-back version → fingerprint
    updates: UpdateGate = field(default_factory=UpdateGate)  # the update rate limiter's state

    def all_labels(self) -> dict[str, int]:
        return {**self.settings.labels, **self.labels}

    def offered_versions(self) -> dict[int, str]:
        """Available versions, less rolled-back candidates whose files have not changed since."""
        return {
            v: f.fingerprint
            for v, f in self.available.items()
            if self.rejected.get(v) != f.fingerprint
        }

    def aspired(self) -> dict[int, str]:
        if not self.offered:
            return {}
        offered = self.offered_versions()
        held = set(self.all_labels().values())
        if self.rollout is not None:
            held |= {self.rollout.stable, self.rollout.candidate}
        if self.rollout_request is not None:
            held.add(self.rollout_request.candidate)
            if self.rollout_request.stable is not None:
                held.add(self.rollout_request.stable)
        admitted = self.updates.admitted
        if admitted is not None:  # newer versions wait for the rate limiter (operators do not)
            offered = {
                v: f for v, f in offered.items() if v <= admitted or v in held | {self.pinned}
            }
        return policy.select_aspired(
            offered,
            self.settings.version_policy,
            pinned=self.pinned,
            labelled=held,
            disabled=self.disabled,
        )

    def view(self) -> policy.ModelView:
        """What the swap policy gets to see of this model."""
        return policy.ModelView(
            self.name,
            self.aspired(),
            {
                v: policy.VersionView(r.state, r.files.fingerprint)
                for v, r in self.versions.items()
                if r.state is not None
            },
        )

    def settled(self) -> bool:
        """Every aspired version is SERVING or FAILED, and nothing else is still loaded."""
        aspired = self.aspired()
        return all(
            (r.state in (S.SERVING, S.FAILED))
            if v in aspired
            else r.state in (S.UNLOADED, S.FAILED, None)
            for v, r in self.versions.items()
        ) and all(v in self.versions for v in aspired)

    def serving(self) -> list[int]:
        return sorted(v for v, r in self.versions.items() if r.state is S.SERVING)

    def default_version(self) -> int | None:
        serving = self.serving()
        if not serving:
            return None
        if self.rollout is not None and self.rollout.stable in serving:
            return self.rollout.stable  # the candidate gets traffic only through the split
        if self.pinned in serving:
            return self.pinned
        aspired = [v for v in serving if v in self.aspired()]
        return max(aspired or serving)

    def canary(self) -> Canary | None:
        """The traffic split while a rollout runs and both of its versions are serving."""
        r = self.rollout
        if r is None or not {r.stable, r.candidate} <= set(self.serving()):
            return None
        shadow = self.settings.rollout.shadow_fraction if r.shadowing else 0.0
        return Canary(r.stable, r.candidate, r.weight, shadow)
