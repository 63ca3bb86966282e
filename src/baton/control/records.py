"""What the manager knows of each model and version, and the views derived from it.

Records are plain data, mutated only by :class:`baton.control.manager.Manager` on the event
loop thread; everything else reads them (the admin API, the repository extension, the data
plane's metadata). The derived views are pure: :meth:`ModelRecord.aspired` applies the version
policy (:func:`baton.control.policy.select_aspired`), :meth:`ModelRecord.view` is what the swap
policy decides on, :meth:`ModelRecord.default_version` and :meth:`ModelRecord.canary` are what
the serving map routes by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from baton.control import policy
from baton.control.lifecycle import LOADING_STATES, VersionState
from baton.rollout.gates import GateConfig, GateVerdict
from baton.rollout.ratelimit import UpdateGate
from baton.rollout.schedule import Rollout, RolloutPlan
from baton.serving.serving_map import Canary
from baton.settings import ModelSettings

if TYPE_CHECKING:  # types only: records stay plain data, importable by pure policies
    from baton.artifacts.files import VersionFiles
    from baton.serving.handle import VersionHandle
    from baton.types import Signature

__all__ = ["ModelRecord", "PendingPin", "RolloutRequest", "VersionRecord"]

S = VersionState


@dataclass(eq=False)
class VersionRecord:
    """Everything the manager knows of one version."""

    version: int
    files: VersionFiles  # the files it was loaded (or failed) with
    state: VersionState | None = None
    reason: str | None = None
    message: str | None = None
    handle: VersionHandle | None = None
    signature: Signature | None = None
    platform: str | None = None
    since: float = 0.0  # when it entered ``state`` (the manager's clock)
    files_bytes: int = 0
    memory: int | None = None  # footprint measured while it loaded
    estimate: int = 0  # footprint the memory pre-flight expects while it loads
    retry: bool = False  # an operator asked for this FAILED version again
    cancelling: bool = False  # its load was cancelled; it ends UNLOADED at a safe point

    def view(self) -> policy.VersionView:
        assert self.state is not None
        return policy.VersionView(self.state, self.files.fingerprint, self.retry, self.cancelling)


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


@dataclass(frozen=True, slots=True)
class PendingPin:
    """An operator's pin (or rollback) that has not taken effect yet: if ``version`` fails to
    load, the pin is refused and the model's pin goes back to ``previous``."""

    version: int
    previous: int | None
    action: str = "pin"  # or "rollback"


@dataclass(eq=False)
class ModelRecord:
    name: str
    settings: ModelSettings = field(default_factory=ModelSettings)
    available: dict[int, VersionFiles] = field(default_factory=dict)
    versions: dict[int, VersionRecord] = field(default_factory=dict)
    pinned: int | None = None
    pending_pin: PendingPin | None = None
    labels: dict[str, int] = field(default_factory=dict)  # admin moves over model.yaml labels
    disabled: bool = False
    offered: bool = True
    configured: bool = True  # False while its model.yaml was never valid: it loads nothing
    config_error: str | None = None
    history: list[int] = field(default_factory=list)  # default versions, oldest first
    announced: int | None = None  # the default version the last ``swap`` event named
    rollout: Rollout | None = None  # running or paused; cleared when it finishes
    rollout_gates: GateConfig = field(default_factory=GateConfig)
    rollout_request: RolloutRequest | None = None
    rollout_due: float | None = None  # when the rollout's gates are next evaluated
    last_rollout: Rollout | None = None  # the most recent finished rollout, for views
    last_verdict: GateVerdict | None = None  # the rollout gates' most recent verdict
    rejected: dict[int, str] = field(default_factory=dict)  # rolled-back version → fingerprint
    updates: UpdateGate = field(default_factory=UpdateGate)  # the update rate limiter's state
    operator_asked: bool = False  # an operator acted and the model has not settled since

    def all_labels(self) -> dict[str, int]:
        return {**self.settings.labels, **self.labels}

    def rejected_now(self) -> set[int]:
        """Rolled-back versions whose files have not changed since."""
        return {
            v
            for v, fp in self.rejected.items()
            if (f := self.available.get(v)) is not None and f.fingerprint == fp
        }

    def offered_versions(self) -> dict[int, str]:
        """Available versions (→ fingerprint), less rolled-back ones whose files are unchanged."""
        rejected = self.rejected_now()
        return {v: f.fingerprint for v, f in self.available.items() if v not in rejected}

    def held(self) -> set[int]:
        """Versions kept loaded besides the version policy's: labels and rollout versions."""
        held = set(self.all_labels().values())
        if self.rollout is not None:
            held |= {self.rollout.stable, self.rollout.candidate}
        if self.rollout_request is not None:
            held.add(self.rollout_request.candidate)
            if self.rollout_request.stable is not None:
                held.add(self.rollout_request.stable)
        return held

    def known(self) -> dict[int, policy.VersionView]:
        return {v: r.view() for v, r in self.versions.items() if r.state is not None}

    def aspired(self) -> dict[int, str]:
        """The versions this model should serve now (version → fingerprint)."""
        if not self.offered or not self.configured:
            return {}
        offered = {v: f.fingerprint for v, f in self.available.items()}
        held = self.held()
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
            unusable=policy.unusable_versions(offered, self.known(), self.rejected_now()),
        )

    def view(self) -> policy.ModelView:
        """What the swap policy gets to see of this model."""
        return policy.ModelView(
            self.name, self.aspired(), self.known(), unload=self.disabled or not self.offered
        )

    def loading(self) -> list[int]:
        """Versions whose load is under way (cancelled ones included, until they end)."""
        return sorted(v for v, r in self.versions.items() if r.state in LOADING_STATES)

    def settled(self) -> bool:
        """Nothing left to do: no next action, no load under way and nothing draining."""
        busy = any(
            r.state in LOADING_STATES or r.state is S.DRAINING for r in self.versions.values()
        )
        return not busy and policy.next_action(self.view()) is None

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

    def compatibility_reference(self) -> tuple[int, Signature, dict | None] | None:
        """The serving default's (version, signature, structure) a new version must stay
        compatible with; ``None`` when nothing serves."""
        current = self.default_version()
        r = self.versions.get(current) if current is not None else None
        if r is None or r.signature is None or r.handle is None:
            return None
        return current, r.signature, r.handle.runtime.structure()

    def canary(self) -> Canary | None:
        """The traffic split while a rollout runs and both of its versions are serving."""
        r = self.rollout
        if r is None or not {r.stable, r.candidate} <= set(self.serving()):
            return None
        shadow = self.settings.rollout.shadow_fraction if r.shadowing else 0.0
        return Canary(r.stable, r.candidate, r.weight, shadow)
