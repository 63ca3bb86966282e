"""Tokens and TLS from the server's settings, checked before anything starts."""

from __future__ import annotations

from baton.api.auth import AccessPolicy, TokenStore
from baton.api.tls import TlsConfig
from baton.errors import ConfigurationError
from baton.settings import ServerSettings

__all__ = ["security_from"]


def security_from(settings: ServerSettings) -> tuple[AccessPolicy, TlsConfig | None]:
    """The access policy and TLS configuration; invalid ones fail closed with a
    :class:`ConfigurationError` saying what is wrong."""
    try:
        tokens = TokenStore.load(settings.tokens) if settings.tokens else None
        access = AccessPolicy(
            tokens, settings.host, protect_inference=settings.protect_inference,
            insecure_admin=settings.insecure_admin,
        )  # fmt: skip
        tls = TlsConfig.from_files(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return access, tls
