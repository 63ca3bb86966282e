"""What every ``baton`` command shares: global flags that work in any position, one-line
errors, a small admin-API client, tables, and parsers for durations and step lists.

An error is a :class:`CliError`; :func:`baton.cli.main` prints it as ``baton: <message>`` on
stderr and exits non-zero — never a traceback.
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from pathlib import Path

import httpx
import orjson

from baton.settings import parse_duration

__all__ = [
    "DEFAULT_URL",
    "CliError",
    "Client",
    "Parser",
    "duration",
    "global_flags",
    "print_json",
    "steps",
    "table",
]

DEFAULT_URL = "http://127.0.0.1:8000"


class CliError(Exception):
    """A command failed; ``str(err)`` is the one line to print. ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (and a pointer to --help)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(f"{self.prog}: {message} (see {self.prog} --help)", code=2)


def global_flags() -> argparse.ArgumentParser:
    """``--url`` and ``--json``, accepted before or after the subcommand (a parent parser whose
    defaults are filled in by :func:`baton.cli.main`, so a later position never resets them)."""
    flags = argparse.ArgumentParser(add_help=False)
    flags.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help=f"server for client commands (default: $BATON_URL or {DEFAULT_URL})",
    )
    flags.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="bearer token for a server with --tokens (default: $BATON_TOKEN)",
    )
    flags.add_argument(
        "--ca-cert",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="PEM",
        help="CA to trust for an https:// server (default: $BATON_CA_CERT, else the system's)",
    )
    flags.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print the server's JSON answer instead of a table",
    )
    return flags


def fill_global_defaults(args: argparse.Namespace) -> None:
    if not hasattr(args, "url"):
        args.url = os.environ.get("BATON_URL", DEFAULT_URL)
    if not hasattr(args, "json"):
        args.json = False
    if not hasattr(args, "token"):
        args.token = os.environ.get("BATON_TOKEN")
    if not hasattr(args, "ca_cert"):
        ca = os.environ.get("BATON_CA_CERT")
        args.ca_cert = Path(ca) if ca else None


def duration(text: str) -> float:
    """argparse type: ``30``, ``250ms``, ``30s``, ``2m`` or ``1h`` → seconds."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def steps(text: str) -> list[float]:
    """argparse type: ``1,5,25,100`` → weights in percent."""
    try:
        return [float(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of percentages: use e.g. 1,10,50,100"
        ) from None


class Client:
    """The admin API at ``url``; every failure is a :class:`CliError` with the server's reason."""

    def __init__(self, url: str, timeout: float = 330.0, token: str | None = None,
                 ca_cert: Path | None = None) -> None:  # fmt: skip
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.headers = {"authorization": f"Bearer {token}"} if token else {}
        self.verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_cert)) if ca_cert else True
        )

    @staticmethod
    def of(args: argparse.Namespace, timeout: float = 330.0) -> Client:
        return Client(args.url, timeout, args.token, args.ca_cert)

    def call(self, method: str, path: str, body: dict | None = None, **params) -> object:
        try:
            response = httpx.request(
                method, self.url + path, json=body, params=params or None, timeout=self.timeout,
                headers=self.headers, verify=self.verify,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {self.url}: {exc or type(exc).__name__}") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text.strip() or response.reason_phrase
            raise CliError(f"{response.status_code}: {message}")
        try:
            return response.json()
        except ValueError:
            raise CliError(f"{self.url} did not answer with JSON: is it a Baton server?") from None


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def print_json(doc: object) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
