"""Typed settings: one class for the server (``BATON_*`` environment), one per model (model.yaml).

Server settings come from, in rising priority: defaults, ``BATON_*`` environment variables, and
``baton serve`` flags. Model settings come from ``<repository>/<model>/model.yaml``::

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

Durations (``drain_timeout``, ``interval``, ``min_interval``, ``max_defer``, and the server's
``poll_interval``, ``shutdown_timeout``, ``rollout_period``) take seconds as a number or a string
with a unit: ``250ms``, ``30s``, ``2m``, ``1h`` — the same as the command line
(:func:`parse_duration`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from baton.rollout.gates import GateConfig
from baton.rollout.ratelimit import SwapLimits
from baton.rollout.schedule import RolloutPlan
from baton.types import DATATYPES, is_digits

__all__ = [
    "GateSettings",
    "GoldenSettings",
    "MemorySettings",
    "ModelSettings",
    "OnnxSettings",
    "PythonSettings",
    "RolloutSettings",
    "SequenceSettings",
    "ServerSettings",
    "StateSettings",
    "TensorOverride",
    "TensorflowSettings",
    "TorchSettings",
    "UpdateLimitSettings",
    "VersionPolicy",
    "WarmupSettings",
    "read_settings",
]


_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``30``, ``250ms``, ``30s``, ``2m`` or ``1h``;
    raises ``ValueError`` saying what is accepted."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"{value!r} is not a duration: use seconds (30) or a number with a unit "
            "(250ms, 30s, 2m, 1h)"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


#: Seconds, written as a number or with a unit (see :func:`parse_duration`).
Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VersionPolicy(_Strict):
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


class WarmupSettings(_Strict):
    enabled: bool = True
    iterations: int = Field(default=1, ge=1, le=1000)


class GoldenSettings(_Strict):
    """Default tolerance for ``<version>/golden/`` cases (a case may set its own)."""

    atol: float = Field(default=1e-5, ge=0)
    rtol: float = Field(default=1e-4, ge=0)


class GateSettings(_Strict):
    """Thresholds of the rollout gates (``None`` turns a gate off); see baton.rollout.gates."""

    max_error_rate: float | None = Field(default=0.01, ge=0, le=1)
    max_p99_ratio: float | None = Field(default=1.5, gt=0)
    max_class_drift: float | None = Field(default=0.1, ge=0, le=1)
    max_mean_shift: float | None = Field(default=0.5, ge=0)
    min_requests: int = Field(default=50, ge=1)
    min_shadow_agreement: float | None = Field(default=0.99, ge=0, le=1)

    def config(self) -> GateConfig:
        return GateConfig(**self.model_dump())


class RolloutSettings(_Strict):
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


class UpdateLimitSettings(_Strict):
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


class MemorySettings(_Strict):
    """What to do when a new version's estimated memory does not fit beside the serving one."""

    when_short: Literal["refuse", "retire_first"] = "refuse"
    file_factor: float = Field(default=2.0, gt=0, description="estimate = files x this")


class TensorOverride(_Strict):
    """Replace the datatype and/or shape the backend reports for one named tensor."""

    name: str
    datatype: str | None = None
    shape: tuple[int, ...] | None = None


class TorchSettings(_Strict):
    """PyTorch: the architecture for weights-only versions, and threads."""

    module: str | None = Field(
        default=None,
        description="'package.module:Class' or 'file.py:Class' (beside model.yaml) to build "
        "before loading weights.safetensors / weights.pt into it",
    )
    kwargs: dict = Field(default_factory=dict, description="constructor arguments of the class")
    threads: int = Field(default=1, ge=1, description="torch intra-op threads (process-wide)")


class PythonSettings(_Strict):
    """A custom runtime: a class with load(path) / predict(inputs) / unload() [/ signature()]."""

    handler: str = Field(description="'package.module:Class' or 'file.py:Class'")
    kwargs: dict = Field(default_factory=dict)


class StateSettings(_Strict):
    """One implicit state tensor of a sequence: fed to ``input`` on each request, taken from
    ``output`` after it. ``shape`` is one sequence's state; a model whose ``input`` has one
    more (batch) dimension gets it with a leading 1. ``initial`` is ``zeros`` or a number."""

    input: str
    output: str
    dtype: str = "FP32"
    shape: tuple[int, ...]
    initial: Literal["zeros"] | float = "zeros"

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, dtype: str) -> str:
        if dtype not in DATATYPES or dtype in ("BYTES", "BF16"):
            raise ValueError(f"state dtype {dtype!r} must be a numeric v2 datatype")
        return dtype

    @field_validator("shape")
    @classmethod
    def _fixed_shape(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < 1 for d in shape):
            raise ValueError(f"state shape {list(shape)} must have fixed positive dimensions")
        return shape


class SequenceSettings(_Strict):
    """A stateful model: requests carry ``sequence_id`` / ``sequence_start`` /
    ``sequence_end``; Baton keeps each sequence's ``state`` between its requests.

    At a swap, live sequences either finish on the version that started them (``drain``) or
    are carried to the new version (``migrate``): by name when the state tensors keep their
    names, dtypes and shapes, or through the new version's ``migrate_hook``."""

    state: tuple[StateSettings, ...] = ()
    idle_timeout: Duration = Field(default=60.0, gt=0)
    max_sequences: int = Field(default=10_000, ge=1)
    swap: Literal["drain", "migrate"] = "drain"
    drain_timeout: Duration = Field(default=300.0, ge=0)
    migrate_hook: str | None = Field(
        default=None, description="a .py file in the version defining migrate(state, from, to)"
    )

    @model_validator(mode="after")
    def _distinct_tensors(self) -> SequenceSettings:
        for kind in ("input", "output"):
            names = [getattr(s, kind) for s in self.state]
            if len(set(names)) != len(names):
                raise ValueError(f"sequence state names an {kind} twice: {names}")
        hook = self.migrate_hook
        if hook is not None and (not hook.endswith(".py") or "/" in hook or hook.startswith(".")):
            raise ValueError(f"migrate_hook {hook!r} must be a .py file name in the version")
        return self


class TensorflowSettings(_Strict):
    signature: str = "serving_default"


class OnnxSettings(_Strict):
    intra_op_num_threads: int = Field(default=1, ge=0)
    inter_op_num_threads: int = Field(default=1, ge=0)
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)


class ModelSettings(_Strict):
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


class ServerSettings(BaseSettings):
    """Server-wide settings; each field can be set as ``BATON_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="BATON_", extra="ignore")

    repository: Path | str | None = Field(
        default=None, description="a directory, or s3://BUCKET/PREFIX"
    )
    s3_endpoint: str | None = Field(
        default=None, description="S3 endpoint URL (default: AWS_ENDPOINT_URL, else AWS's)"
    )
    s3_interval: Duration = Field(
        default=30.0, gt=0, description="time between S3 listings (each costs LIST requests)"
    )
    cache_dir: Path | None = Field(
        default=None,
        description="where versions from S3 are downloaded; default ~/.cache/baton/<bucket>...",
    )
    fleet: str | None = Field(
        default=None, description="etcd://HOST:PORT[,HOST:PORT]: join a fleet (see Fleet)"
    )
    fleet_name: str = Field(default="default", description="the fleet's name in etcd")
    node_name: str | None = Field(default=None, description="this node's name (default: host)")
    zone: str | None = Field(default=None, description="this node's zone (waves spread over)")
    advertise_url: str | None = Field(
        default=None,
        description="the URL this node reports to the fleet (default: from --host and the port)",
    )
    lease_ttl: int = Field(
        default=10, ge=2, le=300, description="seconds a node's report outlives the node"
    )
    host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    grpc_port: int = Field(default=8001, ge=0, le=65535, description="0 = no gRPC")
    poll_interval: Duration = Field(default=1.0, gt=0)
    poll_jitter: float = Field(default=0.1, ge=0, le=1, description="fraction of the interval")
    max_request_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    max_inflight: int = Field(
        default=1024, ge=0, description="inference requests in flight at once; 0 = no limit"
    )
    infer_threads: int = Field(default=0, ge=0, description="0 = one per CPU core")
    workers: int = Field(
        default=1, ge=0, le=256,
        description="processes serving inference; 1 = one process; 0 or auto = one per core",
    )  # fmt: skip
    shutdown_timeout: Duration = Field(default=30.0, ge=0)
    rollout_period: Duration = Field(
        default=1.0, gt=0, description="seconds between gate checks of a running rollout"
    )
    max_concurrent_loads: int = Field(
        default=2, ge=1, description="versions loading at once, across all models"
    )
    session_parameter: str | None = Field(
        default="session", description="request parameter that carries a sticky-session key"
    )
    audit_log: Path | None = Field(
        default=None, description="JSON-lines audit log; default <repository>/.baton/audit.jsonl"
    )
    audit_fsync: bool = False
    require_manifest: bool = Field(default=False, description="every version needs a manifest")
    require_signature: bool = Field(
        default=False, description="every version needs a manifest signed by a trusted key"
    )
    memory_budget: int | None = Field(
        default=None, ge=0, description="bytes all loaded versions together may take"
    )
    memory_headroom: int = Field(
        default=256 * 2**20, ge=0, description="bytes of memory a load must leave available"
    )
    compile_cache: Path | None = Field(
        default=None, description="optimised-graph cache; default <repository>/.baton/compile-cache"
    )
    compile_cache_bytes: int = Field(default=2**30, ge=0, description="0 = no compile cache")
    compile_cache_key: Path | None = Field(
        default=None,
        description="key that signs compile-cache entries (kept outside the repository); "
        "default $XDG_STATE_HOME/baton/compile-cache.key or ~/.local/state/baton/...",
    )
    trusted_keys: tuple[Path, ...] = Field(
        default=(), description="Ed25519 public keys (PEM) whose signatures are accepted"
    )
    tokens: Path | None = Field(
        default=None, description="token file (see `baton token new`); control needs tokens"
    )
    protect_inference: bool = Field(
        default=False, description="inference and metadata need a token with the infer scope"
    )
    insecure_admin: bool = Field(
        default=False, description="accept control requests without tokens beyond loopback"
    )
    tls_cert: Path | None = Field(default=None, description="PEM certificate: HTTPS and gRPC TLS")
    tls_key: Path | None = Field(default=None, description="PEM private key of tls_cert")
    tls_client_ca: Path | None = Field(
        default=None, description="PEM CA that client certificates must be signed by (mTLS)"
    )
    log_level: str = "info"
    access_log: bool = False

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: object) -> object:
        """``auto`` is 0: one worker per core this process may use (see
        :attr:`worker_count`)."""
        if isinstance(value, str) and value.strip().lower() == "auto":
            return 0
        return value

    @model_validator(mode="after")
    def _distinct_ports(self) -> ServerSettings:
        """HTTP and gRPC cannot share a port: each would take half the connections."""
        if self.grpc_port and self.grpc_port == self.http_port:
            raise ValueError(
                f"http_port and grpc_port are both {self.http_port}; give gRPC another port "
                "(or 0 to turn it off)"
            )
        return self

    @field_validator("repository", mode="before")
    @classmethod
    def _repository(cls, value: object) -> object:
        """An S3 URL stays a string; anything else is a directory."""
        if value is None or (isinstance(value, str) and value.startswith("s3://")):
            return value
        return Path(value)  # type: ignore[arg-type]

    @property
    def remote(self) -> bool:
        """Is the repository in an object store (versions are downloaded to ``cache_dir``)?"""
        return isinstance(self.repository, str)

    @property
    def local_cache(self) -> Path | None:
        """Where a remote repository's versions are kept on this machine."""
        if not self.remote:
            return None
        if self.cache_dir is not None:
            return self.cache_dir
        name = str(self.repository)[len("s3://") :].strip("/").replace("/", "_")
        return Path.home() / ".cache" / "baton" / name

    @property
    def state_dir(self) -> Path | None:
        """Where the server keeps its own state (audit log, saved settings, compile cache):
        ``<repository>/.baton`` for a directory, ``<cache_dir>/.baton`` for S3."""
        root = self.local_cache if self.remote else self.repository
        return None if root is None else Path(root) / ".baton"


def read_settings(path: Path) -> ModelSettings:
    """A ``model.yaml``'s settings; raises (OSError, YAMLError, ValueError) when it is bad."""
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError("model.yaml must be a mapping")
    return ModelSettings.model_validate(raw)
