"""Errors that know how they are reported.

Every error Baton raises on purpose derives from :class:`BatonError` and carries the HTTP status
and gRPC status code that a protocol adapter answers with, so adapters never guess::

    BatonError                      500 INTERNAL
    ├── InvalidRequest              400 INVALID_ARGUMENT   malformed body, wrong dtype/shape/size
    │   └── PayloadTooLarge         413 RESOURCE_EXHAUSTED body over the configured limit
    ├── Unauthenticated             401 UNAUTHENTICATED    no token, or one the server does not know
    ├── Forbidden                   403 PERMISSION_DENIED  a token without the scope, or a control
    │                                                      request refused by configuration
    ├── NotFound                    404 NOT_FOUND          unknown model, version or label
    ├── Conflict                    409 FAILED_PRECONDITION request conflicts with current state
    ├── TooManyRequests             429 RESOURCE_EXHAUSTED the in-flight request limit is reached
    ├── Unavailable                 503 UNAVAILABLE        model known but nothing is serving
    └── VersionFailed               (not raised to clients) a version could not become READY;
                                    ``reason`` is a short machine-readable code for metrics

    ConfigurationError              the server cannot start as configured (a port in use, an
                                    audit log another server writes); the message names what to
                                    change, and ``baton serve`` prints it as one line
"""

from __future__ import annotations

__all__ = [
    "BatonError",
    "ConfigurationError",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "TooManyRequests",
    "Unauthenticated",
    "Unavailable",
    "VersionFailed",
]


class BatonError(Exception):
    """Base error: ``str(err)`` is the message a client sees."""

    http_status: int = 500
    grpc_code: str = "INTERNAL"


class InvalidRequest(BatonError):
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class PayloadTooLarge(InvalidRequest):
    http_status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class NotFound(BatonError):
    http_status = 404
    grpc_code = "NOT_FOUND"


class Conflict(BatonError):
    http_status = 409
    grpc_code = "FAILED_PRECONDITION"


class Unauthenticated(BatonError):
    http_status = 401
    grpc_code = "UNAUTHENTICATED"


class Forbidden(BatonError):
    http_status = 403
    grpc_code = "PERMISSION_DENIED"


class TooManyRequests(BatonError):
    http_status = 429
    grpc_code = "RESOURCE_EXHAUSTED"


class Unavailable(BatonError):
    http_status = 503
    grpc_code = "UNAVAILABLE"


class VersionFailed(BatonError):
    """A version failed to verify, load, pass its contract check or warm up.

    ``reason`` is a short code (``load_error``, ``incompatible_signature``, ``warmup_failed``,
    ...) used as a metric label; the message is the human-readable detail.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ConfigurationError(Exception):
    """The server cannot start as configured; ``str(err)`` says what to change."""
