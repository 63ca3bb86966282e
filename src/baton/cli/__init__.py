"""``baton``: serve a model repository, or manage a running server through its admin API.

    baton serve --repository DIR [--host H] [--http-port P] [--grpc-port P] [--poll-interval S]
                [--trusted-key PUBFILE ...] [--require-signature] [--require-manifest]
    baton models | events [--model M] | pin MODEL VERSION | unpin MODEL | rollback MODEL
    baton label MODEL LABEL VERSION | rescan
    baton rollout start MODEL --to V [--steps 1,5,25,50,100] [--interval 30s]
    baton rollout status|promote|pause|resume|abort MODEL
    baton demo-repository DIR [--add-version N]   # the demo used by `make run`
    baton keygen STEM | verify VERSION_DIR [--trusted-key PUB] [--require-signature]
    baton publish MODEL_FILE_OR_DIR --repository DIR --model NAME [--version N] [--sign KEY]

Client commands talk to ``--url`` (default ``$BATON_URL`` or http://127.0.0.1:8000).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

import httpx

from baton.cli.artifacts import COMMANDS as ARTIFACT_COMMANDS
from baton.cli.artifacts import add_commands as add_artifact_commands
from baton.cli.artifacts import run as run_artifact_command

__all__ = ["main"]

DEFAULT_URL = "http://127.0.0.1:8000"


def _table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])


def _call(args: argparse.Namespace, method: str, path: str, body: dict | None = None) -> object:
    try:
        response = httpx.request(method, args.url.rstrip("/") + path, json=body, timeout=60)
    except httpx.HTTPError as exc:
        sys.exit(f"baton: cannot reach {args.url}: {exc}")
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        sys.exit(f"baton: {response.status_code}: {message}")
    return response.json()


def _rollout(args: argparse.Namespace) -> None:
    path = f"/admin/models/{args.model}/rollout"
    if args.action == "start":
        if args.to is None:
            sys.exit("baton rollout start: give --to VERSION")
        body: dict = {"version": args.to}
        if args.steps:
            body["steps"] = [float(s) for s in args.steps.split(",")]
        if args.interval:
            body["interval"] = _seconds(args.interval)
        view = _call(args, "POST", path, body)
    elif args.action == "status":
        view = _call(args, "GET", path)
    else:
        view = _call(args, "POST", f"{path}/{args.action}")
    print(format_rollout(args.model, view))


def format_rollout(model: str, view: dict) -> str:
    """The text ``baton rollout`` prints for the admin API's rollout view."""
    r = view["rollout"]
    if r is None:
        return f"{model}: no rollout in progress"
    steps = " → ".join(f"{s:g}%" for s in r["steps"])
    lines = [
        f"{model}: {r['status']} v{r['stable']} → v{r['candidate']}, step {r['step'] + 1}"
        f"/{len(r['steps'])} ({steps}), candidate weight {r['weight'] * 100:g}%"
        + (f" — {r['reason']}" if r.get("reason") else "")
    ]
    rows = []
    for v, w in view["windows"].items():
        if not w:
            continue
        shadow = "-"
        if w["compared"]:
            shadow = f"{w['agreed']}/{w['compared']} agree, max |diff| {w['max_abs_diff']:.3g}"
        p99 = f"{w['p99'] * 1000:.2f}" if w["p99"] else "-"
        rows.append([v, w["requests"], w["errors"], p99, shadow])
    if rows:
        lines.append(_table(["VERSION", "REQUESTS", "ERRORS", "P99 MS", "SHADOW"], rows))
    verdict = view.get("last_verdict")
    if verdict:
        state = (
            "failed"
            if verdict["failed"]
            else "waiting for data"
            if verdict["insufficient"]
            else "passed"
        )
        lines.append(f"gates: {state}" + "".join(f"\n  {reason}" for reason in verdict["reasons"]))
    return "\n".join(lines)


def _seconds(text: str) -> float:
    """``30``, ``30s``, ``2m`` or ``1h`` → seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def _print_models(models: list[dict]) -> None:
    rows = []
    for m in models:
        for v in m["versions"]:
            marks = []
            if v["version"] == m["default_version"]:
                marks.append("default")
            if v["version"] == m["pinned"]:
                marks.append("pinned")
            marks += [f"@{label}" for label, lv in m["labels"].items() if lv == v["version"]]
            pending = m.get("pending_update")
            if pending and v["version"] == pending["version"]:
                marks.append(f"waiting ({pending['waiting_for']})")
            rows.append(
                [
                    m["name"],
                    v["version"],
                    v["state"],
                    v["inflight"],
                    " ".join(marks),
                    v["message"] or "",
                ]
            )
        if not m["versions"]:
            rows.append([m["name"], "", "no versions", "", "", m["config_error"] or ""])
    print(_table(["MODEL", "VERSION", "STATE", "INFLIGHT", "ROUTING", "LAST ERROR"], rows))


def _serve(args: argparse.Namespace) -> None:
    from baton.server import BatonServer
    from baton.settings import ServerSettings

    overrides = {
        k: v
        for k, v in {
            "repository": args.repository,
            "host": args.host,
            "http_port": args.http_port,
            "grpc_port": args.grpc_port,
            "poll_interval": args.poll_interval,
            "log_level": args.log_level,
            "trusted_keys": tuple(args.trusted_key) or None,
            "require_signature": args.require_signature or None,
            "require_manifest": args.require_manifest or None,
        }.items()
        if v is not None
    }
    settings = ServerSettings(**overrides)
    if settings.repository is None:
        sys.exit("baton serve: give --repository DIR (or set BATON_REPOSITORY)")
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # uvicorn re-raises the signal that stopped it once shutdown is complete; by then everything
    # has drained and unloaded, so make that final signal a no-op and exit 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(BatonServer(settings).serve())


def _loop_factory():
    """uvloop when installed (it is, with uvicorn[standard]): faster sockets and thread wake-ups."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _client(args: argparse.Namespace) -> None:
    cmd = args.command
    if cmd == "models":
        _print_models(_call(args, "GET", "/admin/models"))
    elif cmd == "pin":
        _print_models(
            [_call(args, "POST", f"/admin/models/{args.model}/pin", {"version": args.version})]
        )
    elif cmd == "unpin":
        _print_models([_call(args, "DELETE", f"/admin/models/{args.model}/pin")])
    elif cmd == "rollback":
        result = _call(args, "POST", f"/admin/models/{args.model}/rollback")
        print(f"rolling {args.model} back to version {result['rolled_back_to']} (pinned)")
        _print_models([result["model"]])
    elif cmd == "label":
        _print_models(
            [
                _call(
                    args,
                    "PUT",
                    f"/admin/models/{args.model}/labels/{args.label}",
                    {"version": args.version},
                )
            ]
        )
    elif cmd == "rollout":
        _rollout(args)
    elif cmd == "rescan":
        print("models:", ", ".join(_call(args, "POST", "/admin/repository/rescan")["models"]))
    elif cmd == "events":
        query = f"?limit={args.limit}" + (f"&model={args.model}" if args.model else "")
        rows = [
            [
                datetime.fromtimestamp(e["time"]).strftime("%H:%M:%S.%f")[:-3],
                e["model"],
                e["version"],
                e["kind"],
                e["state"],
                e["reason"],
                e["message"],
            ]
            for e in _call(args, "GET", f"/admin/events{query}")
        ]
        print(_table(["TIME", "MODEL", "VERSION", "EVENT", "STATE", "REASON", "MESSAGE"], rows))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="baton", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("BATON_URL", DEFAULT_URL),
        help="server for client commands (default: $BATON_URL or %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a model repository")
    serve.add_argument("--repository", type=Path)
    serve.add_argument("--host")
    serve.add_argument("--http-port", type=int)
    serve.add_argument("--grpc-port", type=int, help="0 turns gRPC off (default 8001)")
    serve.add_argument("--poll-interval", type=float)
    serve.add_argument("--log-level")
    serve.add_argument(
        "--trusted-key", type=Path, action="append", default=[], metavar="PUBFILE",
        help="accept signatures by this public key (repeatable, for key rotation)",
    )  # fmt: skip
    serve.add_argument("--require-signature", action="store_true",
                       help="load only versions signed by a trusted key")  # fmt: skip
    serve.add_argument("--require-manifest", action="store_true",
                       help="load only versions with a baton-manifest.json")  # fmt: skip
    sub.add_parser("models", help="list models and versions")
    pin = sub.add_parser("pin", help="serve exactly one version until unpinned")
    pin.add_argument("model")
    pin.add_argument("version", type=int)
    sub.add_parser("unpin", help="let the version policy decide again").add_argument("model")
    sub.add_parser("rollback", help="pin the previously served version").add_argument("model")
    label = sub.add_parser("label", help="point a label at a version")
    label.add_argument("model")
    label.add_argument("label")
    label.add_argument("version", type=int)
    sub.add_parser("rescan", help="look at the repository now")
    rollout = sub.add_parser("rollout", help="staged canary rollouts")
    rollout.add_argument(
        "action", choices=["start", "status", "promote", "pause", "resume", "abort"]
    )
    rollout.add_argument("model")
    rollout.add_argument("--to", type=int, help="candidate version (start)")
    rollout.add_argument("--steps", help="weights in %%, e.g. 1,5,25,50,100 (start)")
    rollout.add_argument("--interval", help="time per step, e.g. 30s or 2m (start)")
    events = sub.add_parser("events", help="recent events")
    events.add_argument("--model")
    events.add_argument("--limit", type=int, default=30)
    add_artifact_commands(sub)
    demo = sub.add_parser("demo-repository", help="write the demo model repository")
    demo.add_argument("directory", type=Path)
    demo.add_argument(
        "--add-version",
        type=int,
        metavar="N",
        help="publish demo version N (y = x + N) atomically into it",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        _serve(args)
    elif args.command in ARTIFACT_COMMANDS:
        run_artifact_command(args)
    elif args.command == "demo-repository":
        from baton.dev.demo import affine_model, write_demo_repository, write_version

        if args.add_version:
            path = write_version(
                args.directory / "demo", args.add_version, affine_model(float(args.add_version))
            )
            print(f"published {path} (y = x + {args.add_version})")
        else:
            write_demo_repository(args.directory)
            print(f"demo repository written to {args.directory}")
    else:
        _client(args)


if __name__ == "__main__":
    main()
