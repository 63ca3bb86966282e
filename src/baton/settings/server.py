"""Server-wide settings (:class:`ServerSettings`): in rising priority, defaults, ``BATON_*``
environment variables and ``baton serve`` flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from baton.settings.base import Duration

__all__ = ["ServerSettings"]


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
