"""Per-model settings (:class:`ModelSettings`), read from ``<repository>/<model>/model.yaml``::

    version_policy: {latest: 2}        # or {all: true} or {specific: [1, 3]}; default latest 1
    labels: {stable: 2}                # label -> version; a labelled version is kept loaded
    drain_timeout: 30s                 # wait for in-flight requests before unload
    allow_breaking_change: false       # accept a version whose signature is incompatible
    require_manifest: false            # load only versions with a baton-manifest.json
    require_signature: false           # ... signed by a trusted key (see baton keygen/publish)
    warmup: {iterations: 1}            # runs of each warm-up request before READY
    golden: {atol: 1e-5, rtol: 1e-4}   # tolerance for <version>/golden/*.json cases
    rollout: {mode: canary, steps: [1, 10, 50, 100], interval: 30s, gates: {max_error_rate: 0.01}}
    update_limits: {min_interval: 5m, busy_rps: 500, max_defer: 2m}  # when new versions go in
    memory: {when_short: refuse}       # or retire_first, when a new version does not fit beside
    max_batch_size: 32                 # dynamic batching (0/1 = off); inputs need a -1 first dim
    max_queue_delay_ms: 2              # the longest a request waits for others to join it
    preferred_batch_sizes: [8, 16]     # dispatch at once when a queue reaches one of these
    inputs: [{name: x, shape: [-1, 4]}]  # overrides of the model's own signature
    onnx: {intra_op_num_threads: 1}
    sequence:                          # a stateful model (Triton's sequence protocol)
      state: [{input: h_in, output: h_out, dtype: FP32, shape: [64], initial: zeros}]
      idle_timeout: 60s                # a sequence with no request for this long is ended
      max_sequences: 10000             # live sequences per version; a START beyond is a 429
      swap: drain                      # or migrate: carry live sequences to the new version
      drain_timeout: 5m                # the longest a retired version waits for its sequences
      migrate_hook: migrate.py         # in the version: migrate(state, from_version, to_version)

Durations (``drain_timeout``, ``interval``, ``min_interval``, ``max_defer``) take seconds as a
number or a string with a unit: ``250ms``, ``30s``, ``2m``, ``1h``
(:func:`baton.settings.base.parse_duration`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, field_validator, model_validator

from baton.rollout.gates import GateConfig
from baton.rollout.ratelimit import SwapLimits
from baton.rollout.schedule import RolloutPlan
from baton.settings.base import Duration, Strict
from baton.settings.sequence import SequenceSettings
from baton.types import is_digits

__all__ = [
    "GateSettings",
    "GoldenSettings",
    "MemorySettings",
    "ModelSettings",
    "OnnxSettings",
    "PythonSettings",
    "RolloutSettings",
    "TensorOverride",
    "TensorflowSettings",
    "TorchSettings",
    "UpdateLimitSettings",
    "VersionPolicy",
    "WarmupSettings",
    "read_settings",
]


class VersionPolicy(Strict):
    """Which of the available versions are served: exactly one of the three fields is set."""

    latest: int | None = Field(default=None, ge=1)
    all: bool = False
    specific: tuple[int, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_latest_one(cls, data: object) -> object:
        if isinstance(data, dict) and not {"latest", "all", "specific"} & data.keys():
            return {**data, "latest": 1}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> VersionPolicy:
        if sum([self.latest is not None, self.all, self.specific is not None]) != 1:
            raise ValueError("version_policy takes exactly one of latest, all, specific")
        return self

    def describe(self) -> str:
        if self.all:
            return "all"
        if self.specific is not None:
            return f"specific {list(self.specific)}"
        return f"latest {self.latest}"


class WarmupSettings(Strict):
    enabled: bool = True
    iterations: int = Field(default=1, ge=1, le=1000)


class GoldenSettings(Strict):
    """Default tolerance for ``<version>/golden/`` cases (a case may set its own)."""

    atol: float = Field(default=1e-5, ge=0)
    rtol: float = Field(default=1e-4, ge=0)


class GateSettings(Strict):
    """Thresholds of the rollout gates (``None`` turns a gate off); see baton.rollout.gates."""

    max_error_rate: float | None = Field(default=0.01, ge=0, le=1)
    max_p99_ratio: float | None = Field(default=1.5, gt=0)
    max_class_drift: float | None = Field(default=0.1, ge=0, le=1)
    max_mean_shift: float | None = Field(default=0.5, ge=0)
    min_requests: int = Field(default=50, ge=1)
    min_shadow_agreement: float | None = Field(default=0.99, ge=0, le=1)

    def config(self) -> GateConfig:
        return GateConfig(**self.model_dump())


class RolloutSettings(Strict):
    """How a newer version takes over: at once, or as a canary through weighted steps."""

    mode: Literal["immediate", "canary"] = "immediate"
    steps: tuple[float, ...] = (1, 5, 25, 50, 100)
    interval: Duration = Field(default=30.0, ge=0, description="seconds per step")
    shadow_fraction: float = Field(
        default=0.2, gt=0, le=1, description="share of eligible requests copied at a 0 % step"
    )
    gates: GateSettings = GateSettings()

    @model_validator(mode="after")
    def _valid_plan(self) -> RolloutSettings:
        self.plan()  # raises ValueError for a bad schedule
        return self

    def plan(self) -> RolloutPlan:
        return RolloutPlan(tuple(self.steps), self.interval)


class UpdateLimitSettings(Strict):
    """How often a newly published version may replace the serving one (see rollout.ratelimit).

    Versions published while a swap waits are coalesced: only the newest is loaded.
    """

    min_interval: Duration = Field(default=0.0, ge=0, description="seconds between two swaps")
    busy_rps: float | None = Field(
        default=None, ge=0, description="defer a swap while the model serves more requests/s"
    )
    max_defer: Duration = Field(default=60.0, ge=0, description="the longest a busy swap waits")

    def limits(self) -> SwapLimits:
        return SwapLimits(self.min_interval, self.busy_rps, self.max_defer)


class MemorySettings(Strict):
    """What to do when a new version's estimated memory does not fit beside the serving one."""

    when_short: Literal["refuse", "retire_first"] = "refuse"
    file_factor: float = Field(default=2.0, gt=0, description="estimate = files x this")


class TensorOverride(Strict):
    """Replace the datatype and/or shape the backend reports for one named tensor."""

    name: str
    datatype: str | None = None
    shape: tuple[int, ...] | None = None


class TorchSettings(Strict):
    """PyTorch: the architecture for weights-only versions, and threads."""

    module: str | None = Field(
        default=None,
        description="'package.module:Class' or 'file.py:Class' (beside model.yaml) to build "
        "before loading weights.safetensors / weights.pt into it",
    )
    kwargs: dict = Field(default_factory=dict, description="constructor arguments of the class")
    threads: int = Field(default=1, ge=1, description="torch intra-op threads (process-wide)")


class PythonSettings(Strict):
    """A custom runtime: a class with load(path) / predict(inputs) / unload() [/ signature()]."""

    handler: str = Field(description="'package.module:Class' or 'file.py:Class'")
    kwargs: dict = Field(default_factory=dict)


class TensorflowSettings(Strict):
    signature: str = "serving_default"


class OnnxSettings(Strict):
    intra_op_num_threads: int = Field(default=1, ge=0)
    inter_op_num_threads: int = Field(default=1, ge=0)
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)


class ModelSettings(Strict):
    """Per-model settings, read from ``model.yaml``; every field is optional."""

    version_policy: VersionPolicy = VersionPolicy(latest=1)
    labels: dict[str, int] = Field(default_factory=dict)
    drain_timeout: Duration = Field(default=30.0, ge=0)
    allow_breaking_change: bool = False
    require_manifest: bool = False
    require_signature: bool = False
    backend: (
        Literal["onnx", "torchscript", "torch_export", "torch_weights", "tensorflow", "paddle",
                "python", "tensorrt"] | None
    ) = None  # fmt: skip
    warmup: WarmupSettings = WarmupSettings()
    golden: GoldenSettings = GoldenSettings()
    rollout: RolloutSettings = RolloutSettings()
    update_limits: UpdateLimitSettings = UpdateLimitSettings()
    memory: MemorySettings = MemorySettings()
    max_batch_size: int = Field(default=0, ge=0, description="0 or 1 = no dynamic batching")
    max_queue_delay_ms: float = Field(default=2.0, ge=0, le=60_000)
    preferred_batch_sizes: tuple[int, ...] = ()
    inputs: tuple[TensorOverride, ...] = ()
    outputs: tuple[TensorOverride, ...] = ()
    onnx: OnnxSettings = OnnxSettings()
    torch: TorchSettings = TorchSettings()
    tensorflow: TensorflowSettings = TensorflowSettings()
    python: PythonSettings | None = None
    sequence: SequenceSettings | None = None

    def code_config(self) -> dict:
        """The settings that decide which code runs: the backend, a Python handler and a PyTorch
        module with their arguments, and a sequence migration hook (listed only when set, so
        manifests written before hooks existed still match). ``baton publish`` records them in
        the (signed) manifest; a version whose model.yaml disagrees is refused under
        ``require_signature``."""
        hook = self.sequence.migrate_hook if self.sequence else None
        return ({"sequence_migrate_hook": hook} if hook else {}) | {
            "backend": self.backend,
            "python": self.python.model_dump(mode="json") if self.python else None,
            "torch_module": (
                {"module": self.torch.module, "kwargs": self.torch.kwargs}
                if self.torch.module
                else None
            ),
        }

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, int]) -> dict[str, int]:
        for name in labels:
            if not name or is_digits(name) or "/" in name:
                raise ValueError(f"label {name!r} must be a non-numeric name without '/'")
        return labels


def read_settings(path: Path) -> ModelSettings:
    """A ``model.yaml``'s settings; raises (OSError, YAMLError, ValueError) when it is bad."""
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError("model.yaml must be a mapping")
    return ModelSettings.model_validate(raw)
