"""``baton token new NAME --scope SCOPE --tokens FILE``: make an access token.

The token is printed once and never stored: the file keeps its SHA-256, its name and its
scopes (created with mode 0600; an existing file keeps its mode). A name already in the file
is refused, so a token is never replaced by accident; remove its entry to revoke it, then
restart the server (it reads the file at start).
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

import yaml

from baton.api.auth import SCOPES, TokenEntry, TokenStore, hash_token
from baton.cli.common import CliError

__all__ = ["add_commands", "run"]


def add_commands(sub) -> None:
    token = sub.add_parser("token", help="access tokens for servers started with --tokens")
    actions = token.add_subparsers(dest="token_action", required=True, metavar="ACTION")
    new = actions.add_parser("new", help="make a token, print it once, store its hash")
    new.add_argument("name", help="who or what uses it (shown in the audit log)")
    new.add_argument("--scope", action="append", choices=SCOPES, required=True,
                     help="infer, read or operate (implies read); repeatable")  # fmt: skip
    new.add_argument("--tokens", type=Path, required=True, metavar="FILE",
                     help="the token file the server reads")  # fmt: skip


def run(args: argparse.Namespace) -> None:
    path: Path = args.tokens
    try:
        entries = TokenStore.load(path).entries if path.exists() else []
    except ValueError as exc:
        raise CliError(f"token: {exc}") from None
    if any(e.name == args.name for e in entries):
        raise CliError(f"token: {path} already has a token named '{args.name}'")
    token = secrets.token_urlsafe(32)
    try:
        entry = TokenEntry(name=args.name, sha256=hash_token(token), scopes=tuple(args.scope))
    except ValueError as exc:
        raise CliError(f"token: {str(exc).splitlines()[0]}: use letters, digits, _ . @ -") from None
    document = {"tokens": [e.model_dump(mode="json") for e in [*entries, entry]]}
    temp = path.with_name(f".{path.name}.tmp")
    try:
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(document, f, sort_keys=False)
        os.chmod(temp, mode)
        os.replace(temp, path)
    except OSError as exc:
        raise CliError(f"token: cannot write {path}: {exc.strerror or exc}") from None
    print(token)
    print(f"(token '{args.name}' with {', '.join(entry.scopes)} added to {path}; it is shown "
          "only this once)", file=sys.stderr)  # fmt: skip
