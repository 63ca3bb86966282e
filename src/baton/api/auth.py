"""Who may do what: bearer tokens with scopes, and the access policy every protocol applies.

Scopes: ``infer`` (inference and model metadata, when ``--protect-inference``), ``read``
(admin reads, the repository index; metrics too when there are tokens), ``operate``
(everything that changes what is served: pins, rollbacks, labels, rollouts, load, unload,
rescan; implies ``read``).

The token file (``baton serve --tokens FILE``, written by ``baton token new``) holds hashes, not
tokens::

    tokens:
      - {name: ops, sha256: 9f86d0…, scopes: [operate]}
      - {name: ci-reader, sha256: 2c26b4…, scopes: [read]}

A presented token is hashed and compared with every entry in constant time. Without a token
file, inference is open and control requests (``read``, ``operate``) are answered only on a
loopback address — anywhere else they get 403 naming ``--tokens`` — unless the operator opts
out with ``--insecure-admin``. Health probes stay open in every configuration.

    policy = AccessPolicy(TokenStore.load(path), host="0.0.0.0")
    name = policy.check("operate", "Bearer s3cr3t")   # the token's name, for the audit log
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from baton.errors import Forbidden, Unauthenticated

__all__ = [
    "SCOPES",
    "AccessPolicy",
    "Scope",
    "TokenEntry",
    "TokenStore",
    "grpc_scope",
    "hash_token",
    "http_scope",
    "is_loopback",
]

Scope = Literal["infer", "read", "operate"]
Need = Literal["infer", "read", "operate", "metrics"]  # metrics: read when tokens exist
SCOPES: tuple[Scope, ...] = ("infer", "read", "operate")
_IMPLIES: dict[str, frozenset[str]] = {
    "infer": frozenset({"infer"}),
    "read": frozenset({"read"}),
    "operate": frozenset({"operate", "read"}),
}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.@-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: tuple[Scope, ...] = Field(min_length=1)

    @field_validator("scopes")
    @classmethod
    def _distinct(cls, scopes: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(scopes))

    def grants(self, scope: str) -> bool:
        return any(scope in _IMPLIES[s] for s in self.scopes)


class _TokenFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenEntry] = Field(default_factory=list)


class TokenStore:
    """The tokens a server accepts (their hashes, names and scopes)."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ValueError("token names must be unique")
        self.entries = list(entries)

    @staticmethod
    def load(path: Path) -> TokenStore:
        """Read a token file; ``ValueError`` (saying what is wrong) for anything invalid."""
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
            return TokenStore(_TokenFile.model_validate(raw).tokens)
        except OSError as exc:
            raise ValueError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
        except (yaml.YAMLError, ValidationError, ValueError, TypeError) as exc:
            detail = str(exc).replace("\n", " ")
            raise ValueError(f"the token file {path} is not valid: {detail}") from None

    def find(self, token: str) -> TokenEntry | None:
        digest = hash_token(token)
        found = None
        for entry in self.entries:  # every entry, in constant time each: no early exit
            if hmac.compare_digest(entry.sha256, digest):
                found = entry
        return found


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AccessPolicy:
    def __init__(
        self,
        tokens: TokenStore | None,
        host: str = "127.0.0.1",
        *,
        protect_inference: bool = False,
        insecure_admin: bool = False,
    ) -> None:
        if protect_inference and tokens is None:
            raise ValueError("--protect-inference needs --tokens: there is no token to ask for")
        self.tokens = tokens
        self.protect_inference = protect_inference
        self.control_open = tokens is None and (insecure_admin or is_loopback(host))

    def warning(self) -> str | None:
        """What the server should warn about at start, if anything."""
        if self.tokens is None and self.control_open:
            return ("no --tokens: control endpoints (pin, rollback, rollouts, load, unload) are "
                    "open to anyone who can reach this address")  # fmt: skip
        return None

    def check(self, scope: Need | None, authorization: str | None) -> str | None:
        """Allow a request that needs ``scope`` (``None``: open to all) with this
        ``Authorization`` value; returns the token's name (``None`` when no token was needed).
        Raises :class:`Unauthenticated` (401) or :class:`Forbidden` (403) with the reason."""
        if scope is None or (scope == "infer" and not self.protect_inference):
            return None
        if scope == "metrics":  # scrapers: open without tokens, `read` with them
            if self.tokens is None:
                return None
            scope = "read"
        if self.tokens is None:
            if self.control_open:
                return None
            raise Forbidden(
                "control requests are refused: this server listens beyond loopback without "
                "tokens; start it with --tokens FILE (see `baton token new`), or with "
                "--insecure-admin to accept them from anyone"
            )
        token = _bearer(authorization)
        if token is None:
            raise Unauthenticated(f"this needs a token with the '{scope}' scope: send "
                                  "'Authorization: Bearer <token>'")  # fmt: skip
        entry = self.tokens.find(token)
        if entry is None:
            raise Unauthenticated("unknown token")
        if not entry.grants(scope):
            raise Forbidden(f"token '{entry.name}' lacks the '{scope}' scope")
        return entry.name


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    kind, _, value = authorization.strip().partition(" ")
    value = value.strip()
    return value if kind.lower() == "bearer" and value else None


def http_scope(method: str, path: str) -> Need | None:
    """The scope an HTTP request needs (``None``: open)."""
    if path.startswith("/v2/health/") or path == "/admin/openapi.json":
        return None
    if path.startswith("/admin/"):
        return "read" if method in ("GET", "HEAD") else "operate"
    if path.startswith("/v2/repository/"):
        return "read" if path == "/v2/repository/index" else "operate"
    if path == "/metrics":
        return "metrics"
    if path == "/dashboard/stream":
        return "read"
    if path == "/v2" or path.startswith("/v2/models"):
        return "infer"
    return None


_GRPC_SCOPES: dict[str, Scope | None] = {
    "ServerLive": None,
    "ServerReady": None,
    "ServerMetadata": "infer",
    "ModelReady": "infer",
    "ModelMetadata": "infer",
    "ModelInfer": "infer",
    "ModelStreamInfer": "infer",
    "RepositoryIndex": "read",
    "RepositoryModelLoad": "operate",
    "RepositoryModelUnload": "operate",
}


def grpc_scope(method: str) -> Scope | None:
    """The scope a gRPC method (``/package.Service/Method``) needs; unknown methods need
    ``operate`` (safe by default)."""
    return _GRPC_SCOPES.get(method.rsplit("/", 1)[-1], "operate")
