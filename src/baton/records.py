"""What the manager knows of each model and version, and the views derived from it.

Records are mutated only by :class:`baton.manager.Manager`; everything else reads them (the
admin API, the repository extension, the data plane's metadata).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from baton import policy
from baton.handle import VersionHandle
from baton.lifecycle import VersionState
from baton.settings import ModelSettings
from baton.sources.base import VersionFiles
from baton.types import Signature

__all__ = ["ModelRecord", "VersionRecord"]

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

    def all_labels(self) -> dict[str, int]:
        return {**self.settings.labels, **self.labels}

    def aspired(self) -> dict[int, str]:
        if not self.offered:
            return {}
        return policy.select_aspired(
            {v: f.fingerprint for v, f in self.available.items()},
            self.settings.version_policy,
            pinned=self.pinned,
            labelled=self.all_labels().values(),
            disabled=self.disabled,
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
        if self.pinned in serving:
            return self.pinned
        aspired = [v for v in serving if v in self.aspired()]
        return max(aspired or serving)
