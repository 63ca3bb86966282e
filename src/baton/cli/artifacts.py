"""The artifact commands of the ``baton`` CLI: ``keygen``, ``publish`` and ``verify``."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from baton.cli.common import CliError

__all__ = ["COMMANDS", "ProgressBar", "add_commands", "run"]

COMMANDS = ("keygen", "publish", "verify")


def add_commands(sub) -> None:
    keygen = sub.add_parser("keygen", help="make an Ed25519 key pair for signing versions")
    keygen.add_argument(
        "stem", type=Path, help="writes STEM.key (private, readable by you only) and STEM.pub"
    )
    publish = sub.add_parser("publish", help="publish a model as a new version, with a manifest")
    publish.add_argument("source", type=Path, help="a model file (.onnx) or a directory")
    publish.add_argument("--repository", required=True, metavar="DIR_OR_S3_URL",
                         help="a directory, or s3://BUCKET/PREFIX")  # fmt: skip
    publish.add_argument("--s3-endpoint", metavar="URL", help="S3 endpoint (default: AWS's)")
    publish.add_argument("--model", required=True)
    publish.add_argument("--version", type=int, help="default: the next number")
    publish.add_argument("--sign", type=Path, metavar="KEY", help="private key from keygen")
    publish.add_argument("--description", default="")
    publish.add_argument("--label", action="append", default=[], help="recorded in the manifest")
    publish.add_argument("--parent", type=int, help="the version this one derives from")
    publish.add_argument("--delta-from", type=int, metavar="N",
                         help="store only the ONNX weights that differ from version N")  # fmt: skip
    verify = sub.add_parser("verify", help="check a version directory as the server would")
    verify.add_argument("directory", type=Path)
    verify.add_argument("--trusted-key", type=Path, action="append", default=[])
    verify.add_argument("--require-signature", action="store_true")


def run(args: argparse.Namespace) -> None:
    if args.command == "keygen":
        from baton.artifacts.signing import generate_key_pair

        try:
            key, pub = generate_key_pair(args.stem)
        except FileExistsError as exc:
            raise CliError(f"keygen: {exc.filename} exists; choose another name") from None
        except OSError as exc:
            raise CliError(f"keygen: cannot write {exc.filename}: {exc.strerror}") from None
        print(f"private key {key} (mode 600: keep it secret), public key {pub} (give to servers)")
        if _in_git_work_tree(key.resolve().parent):
            print(f"warning: {key} is inside a git work tree; keep it out of commits "
                  "(add *.key to .gitignore)", file=sys.stderr)  # fmt: skip
    elif args.command == "publish":
        _publish(args)
    else:
        _verify(args)


def _publish(args: argparse.Namespace) -> None:
    from baton.artifacts.publish import PublishError, publish, publish_to_s3

    bar = ProgressBar()
    options = dict(
        version=args.version, sign_key=args.sign, description=args.description,
        labels=tuple(args.label), parent=args.parent, delta_from=args.delta_from, progress=bar,
    )  # fmt: skip
    try:
        if args.repository.startswith("s3://"):
            url = publish_to_s3(args.source, args.repository, args.model,
                                endpoint=args.s3_endpoint, **options)  # fmt: skip
            bar.close()
            signed = " (signed)" if args.sign else ""
            print(f"published {args.model} version {url.rsplit('/', 1)[1]} at {url}{signed}")
            return
        path = publish(args.source, Path(args.repository), args.model, **options)
    except (PublishError, OSError, ValueError, RuntimeError) as exc:
        bar.close()
        raise CliError(f"publish: {exc}") from None
    bar.close()
    notes = ["signed"] if args.sign else []
    if args.delta_from:
        notes.append(f"delta from {args.delta_from}, {_size(path)} stored")
    extra = f" ({', '.join(notes)})" if notes else ""
    print(f"published {args.model} version {path.name} at {path}{extra}")


def _in_git_work_tree(directory: Path) -> bool:
    return any((d / ".git").exists() for d in (directory, *directory.parents))


def _size(directory: Path) -> str:
    size = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    return f"{size / 2**20:,.2f} MiB" if size >= 2**20 else f"{size:,} bytes"


def _verify(args: argparse.Namespace) -> None:
    from baton.artifacts.files import VersionFiles, fingerprint
    from baton.artifacts.signing import TrustStore
    from baton.artifacts.verify import Verifier
    from baton.errors import VersionFailed
    from baton.settings import ModelSettings, read_settings

    if not args.directory.is_dir():
        raise CliError(f"verify: {args.directory} is not a version directory")
    config = args.directory.parent / "model.yaml"  # the model's settings, as the server reads them
    try:
        settings = read_settings(config) if config.is_file() else ModelSettings()
    except Exception as exc:
        raise CliError(f"verify: {config} is not valid: {str(exc).splitlines()[0]}") from None
    verifier = Verifier(TrustStore(args.trusted_key), require_signature=args.require_signature)
    files = VersionFiles(args.directory, fingerprint(args.directory) or "")
    try:
        facts = verifier(files, settings)
    except VersionFailed as exc:
        raise CliError(f"verify: FAILED {exc.reason}: {exc}") from None
    if facts.get("load_from") is not None:
        shutil.rmtree(facts["load_from"], ignore_errors=True)  # the verified copy: not needed
    signed = f", signed by key {facts['signed_by']}" if facts["signed_by"] else ""
    print(f"OK {args.directory}" + (" (manifest verified" + signed + ")" if facts["manifest"]
                                     else " (no manifest)"))  # fmt: skip


class ProgressBar:
    """A one-line progress bar on stderr, drawn at most ten times a second, for big copies."""

    def __init__(self, min_bytes: int = 32 * 2**20) -> None:
        self.min_bytes = min_bytes
        self.started = time.monotonic()
        self._drawn = 0.0
        self._shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if total < self.min_bytes or (now - self._drawn < 0.1 and done < total):
            return
        self._drawn, self._shown = now, True
        rate = done / max(now - self.started, 1e-6) / 2**20
        filled = int(30 * done / total)
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {done / 2**20:,.0f}/{total / 2**20:,.0f}"
            f" MiB  {rate:,.0f} MiB/s"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self._shown:
            sys.stderr.write("\n")
