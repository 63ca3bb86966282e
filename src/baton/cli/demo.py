"""``baton demo-repository DIR [--add-version N]``: the demo model repository of ``make run``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_commands", "run"]


def add_commands(sub) -> None:
    demo = sub.add_parser("demo-repository", help="write the demo model repository")
    demo.add_argument("directory", type=Path)
    demo.add_argument(
        "--add-version", type=int, metavar="N",
        help="publish demo version N (y = x + N) atomically into it",
    )  # fmt: skip


def run(args: argparse.Namespace) -> None:
    from baton.dev.demo import affine_model, write_demo_repository, write_version

    if args.add_version:
        path = write_version(
            args.directory / "demo", args.add_version, affine_model(float(args.add_version))
        )
        print(f"published {path} (y = x + {args.add_version})")
    else:
        write_demo_repository(args.directory)
        print(f"demo repository written to {args.directory}")
