"""``baton serve``: run a server on a model repository until SIGTERM or Ctrl-C.

Flags override ``BATON_*`` environment variables, which override defaults (see
:class:`baton.settings.ServerSettings`). A setting that is invalid, a port in use or an audit
log another server writes ends the command with one line saying what to change.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path

from pydantic import ValidationError

from baton.cli.common import CliError, duration

__all__ = ["add_commands", "run"]

LOG_LEVELS = ("debug", "info", "warning", "error")


def add_commands(sub) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve a model repository",
        description="Serve a model repository over HTTP and gRPC (Open Inference Protocol). "
        "Flags override BATON_* environment variables.",
    )
    serve.add_argument("--repository", metavar="DIR_OR_S3_URL",
                       help="model repository to serve: a directory or s3://BUCKET/PREFIX "
                       "($BATON_REPOSITORY)")  # fmt: skip
    serve.add_argument("--s3-endpoint", metavar="URL",
                       help="S3 endpoint (default: $AWS_ENDPOINT_URL, else AWS)")  # fmt: skip
    serve.add_argument("--s3-interval", type=duration, metavar="DURATION",
                       help="time between S3 listings (default 30s)")  # fmt: skip
    serve.add_argument("--cache-dir", type=Path, metavar="DIR",
                       help="where versions from S3 are downloaded")  # fmt: skip
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--http-port", type=int, metavar="PORT", help="HTTP port (default 8000)")
    serve.add_argument("--grpc-port", type=int, metavar="PORT",
                       help="gRPC port (default 8001); 0 turns gRPC off")  # fmt: skip
    serve.add_argument("--poll-interval", type=duration, metavar="DURATION",
                       help="time between repository polls, e.g. 1s (default 1s)")  # fmt: skip
    serve.add_argument("--max-concurrent-loads", type=int, metavar="N",
                       help="versions loading at once, across all models (default 2)")  # fmt: skip
    serve.add_argument("--max-inflight", type=int, metavar="N",
                       help="inference requests in flight at once before 429 (default 1024; "
                       "0 = no limit)")  # fmt: skip
    serve.add_argument("--workers", metavar="N|auto",
                       help="worker processes serving inference (default 1: one process; "
                       "auto: one per usable core)")  # fmt: skip
    serve.add_argument("--log-level", choices=LOG_LEVELS, help="default info")
    serve.add_argument(
        "--trusted-key", type=Path, action="append", default=[], metavar="PUBFILE",
        help="accept signatures by this public key (repeatable, for key rotation)",
    )  # fmt: skip
    serve.add_argument("--require-signature", action="store_true",
                       help="load only versions signed by a trusted key")  # fmt: skip
    serve.add_argument("--require-manifest", action="store_true",
                       help="load only versions with a baton-manifest.json")  # fmt: skip
    fleet = serve.add_argument_group("fleet (see README: Fleet)")
    fleet.add_argument("--fleet", metavar="ETCD_URL",
                       help="join a fleet: etcd://HOST:PORT[,...] ($BATON_FLEET)")  # fmt: skip
    fleet.add_argument("--fleet-name", metavar="NAME",
                       help="the fleet's name in etcd (default 'default')")  # fmt: skip
    fleet.add_argument("--node-name", metavar="NODE",
                       help="this node's name in the fleet (default: the host name)")  # fmt: skip
    fleet.add_argument("--zone", metavar="ZONE",
                       help="this node's failure domain (waves spread across zones)")  # fmt: skip
    fleet.add_argument("--advertise-url", metavar="URL",
                       help="the URL reported to the fleet (default: from --host)")  # fmt: skip
    fleet.add_argument("--lease-ttl", type=int, metavar="SECONDS",
                       help="how long the node's report outlives it (default 10)")  # fmt: skip
    security = serve.add_argument_group("access and TLS")
    security.add_argument("--tokens", type=Path, metavar="FILE",
                          help="token file (baton token new); control requests then need a "
                          "token with the right scope")  # fmt: skip
    security.add_argument("--protect-inference", action="store_true",
                          help="inference and metadata need a token (infer scope)")  # fmt: skip
    security.add_argument("--insecure-admin", action="store_true",
                          help="accept control requests without tokens on a non-loopback "
                          "address (not recommended)")  # fmt: skip
    security.add_argument("--tls-cert", type=Path, metavar="PEM",
                          help="serve HTTPS and gRPC over TLS with this certificate")  # fmt: skip
    security.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key")
    security.add_argument("--tls-client-ca", type=Path, metavar="PEM",
                          help="require client certificates signed by this CA (mTLS)")  # fmt: skip


def _settings(args: argparse.Namespace):
    from baton.settings import ServerSettings

    overrides = {
        k: v
        for k, v in {
            "repository": args.repository,
            "s3_endpoint": args.s3_endpoint,
            "s3_interval": args.s3_interval,
            "cache_dir": args.cache_dir,
            "host": args.host,
            "http_port": args.http_port,
            "grpc_port": args.grpc_port,
            "poll_interval": args.poll_interval,
            "max_concurrent_loads": args.max_concurrent_loads,
            "max_inflight": args.max_inflight,
            "workers": args.workers,
            "log_level": args.log_level,
            "trusted_keys": tuple(args.trusted_key) or None,
            "require_signature": args.require_signature or None,
            "require_manifest": args.require_manifest or None,
            "tokens": args.tokens,
            "protect_inference": args.protect_inference or None,
            "insecure_admin": args.insecure_admin or None,
            "tls_cert": args.tls_cert,
            "tls_key": args.tls_key,
            "tls_client_ca": args.tls_client_ca,
            "fleet": args.fleet,
            "fleet_name": args.fleet_name,
            "node_name": args.node_name,
            "zone": args.zone,
            "advertise_url": args.advertise_url,
            "lease_ttl": args.lease_ttl,
        }.items()
        if v is not None
    }
    try:
        settings = ServerSettings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise CliError(f"serve: invalid setting ({problems})", code=2) from None
    if settings.repository is None:
        raise CliError("serve: give --repository DIR (or set BATON_REPOSITORY)", code=2)
    if not settings.remote and not settings.repository.is_dir():
        raise CliError(f"serve: the model repository {settings.repository} is not a directory",
                       code=2)  # fmt: skip
    return settings


def run(args: argparse.Namespace) -> None:
    settings = _settings(args)
    from baton.errors import ConfigurationError

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # uvicorn re-raises the signal that stopped it once shutdown is complete; by then everything
    # has drained and unloaded, so make that final signal a no-op and exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(settings))
    except ConfigurationError as exc:
        raise CliError(f"serve: {exc}") from None


async def _serve(settings) -> None:
    from baton.server import BatonServer

    await BatonServer(settings).serve()


def _loop_factory():
    """uvloop when installed (it is, with uvicorn[standard]): faster sockets and thread wake-ups."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
