"""``baton``: serve a model repository, manage a running server, publish and verify versions.

    baton serve --repository DIR [--host H] [--http-port P] [--grpc-port P] [--poll-interval D]
                [--max-concurrent-loads N] [--trusted-key PUB ...] [--require-signature]
    baton models | events [--model M] | audit [--model M] | rescan
    baton pin MODEL VERSION | unpin MODEL | rollback MODEL | label MODEL LABEL VERSION
    baton rollout start MODEL --to V [--steps 1,5,25,50,100] [--interval 30s]
    baton rollout status|promote|pause|resume|abort MODEL
    baton keygen STEM | verify VERSION_DIR [--trusted-key PUB] [--require-signature]
    baton token new NAME --scope infer|read|operate --tokens FILE
    baton publish MODEL_FILE_OR_DIR --repository DIR --model NAME [--version N] [--sign KEY]
    baton demo-repository DIR [--add-version N]   # the demo used by `make run`
    baton fleet status | target MODEL V | rollout ACTION MODEL | audit   (--fleet etcd://...)

Client commands talk to ``--url`` (default ``$BATON_URL`` or http://127.0.0.1:8000), with
``--token`` (``$BATON_TOKEN``) for a server started with ``--tokens`` and ``--ca-cert``
(``$BATON_CA_CERT``) for one with its own CA, and print tables, or the server's JSON with
``--json``; these flags go before or after the subcommand.
Errors are one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import sys

from baton.cli import artifacts, demo, fleet, models, rollout, serve, token
from baton.cli.common import CliError, Parser, fill_global_defaults, global_flags

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    flags = global_flags()
    parser = Parser(prog="baton", description=__doc__.split("\n")[0], parents=[flags])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)  # fmt: skip
    serve.add_commands(sub)
    models.add_commands(sub, flags)
    rollout.add_commands(sub, flags)
    fleet.add_commands(sub, flags)
    artifacts.add_commands(sub)
    token.add_commands(sub)
    demo.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    try:
        args = _parser().parse_args(argv)
        fill_global_defaults(args)
        if args.command == "serve":
            serve.run(args)
        elif args.command in models.COMMANDS:
            models.run(args)
        elif args.command == "rollout":
            rollout.run(args)
        elif args.command == "fleet":
            fleet.run(args)
        elif args.command in artifacts.COMMANDS:
            artifacts.run(args)
        elif args.command == "token":
            token.run(args)
        else:
            demo.run(args)
    except CliError as exc:
        message = str(exc)
        print(message if message.startswith("baton") else f"baton: {message}", file=sys.stderr)
        sys.exit(exc.code)
    except KeyboardInterrupt:
        sys.exit(130)
