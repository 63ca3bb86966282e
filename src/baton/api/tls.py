"""TLS for HTTP and gRPC from one certificate, and mutual TLS with a client CA.

``--tls-cert`` and ``--tls-key`` (PEM) serve HTTPS and gRPC over TLS on the usual ports;
``--tls-client-ca`` also requires every client to present a certificate signed by that CA.
The files are read and checked at start (a pair that does not match, or a file that cannot be
read, stops the server with the reason), then handed to uvicorn and grpcio.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

__all__ = ["TlsConfig"]


@dataclass(frozen=True)
class TlsConfig:
    cert: Path
    key: Path
    client_ca: Path | None = None

    @staticmethod
    def from_files(cert: Path | None, key: Path | None, client_ca: Path | None) -> TlsConfig | None:
        """The TLS configuration, ``None`` for none; ``ValueError`` saying what is wrong."""
        if cert is None and key is None:
            if client_ca is not None:
                raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
            return None
        if cert is None or key is None:
            raise ValueError("give both --tls-cert and --tls-key")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(cert, key)
            if client_ca is not None:
                context.load_verify_locations(client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot use the TLS files: {exc}") from None
        return TlsConfig(Path(cert), Path(key), Path(client_ca) if client_ca else None)

    def uvicorn_options(self) -> dict:
        options = {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key)}
        if self.client_ca is not None:
            options |= {"ssl_ca_certs": str(self.client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        return options

    def grpc_credentials(self) -> grpc.ServerCredentials:
        root = self.client_ca.read_bytes() if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=root,
            require_client_auth=root is not None,
        )
