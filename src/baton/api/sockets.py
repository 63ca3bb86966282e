"""Listening sockets for the HTTP and gRPC ports, with errors that say which flag to change."""

from __future__ import annotations

import socket

from baton.errors import ConfigurationError

__all__ = ["bind_socket"]


def bind_socket(
    host: str,
    port: int,
    what: str = "HTTP port",
    flag: str = "--http-port",
    *,
    reuse_port: bool = False,
) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening; :class:`ConfigurationError` naming
    ``flag`` if the port is taken (or the address cannot be used). With ``reuse_port``
    (``SO_REUSEPORT``) the worker processes of one node share the port and the kernel spreads
    connections over them."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {host}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen()  # at once: a later bind of this port elsewhere (gRPC's) must fail
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"{what} {port} on {host} is not available ({exc.strerror or exc}); "
            f"choose another with {flag}"
        ) from None
    sock.set_inheritable(True)
    return sock
