"""``baton rollout start|status|promote|pause|resume|abort MODEL``: staged canary rollouts."""

from __future__ import annotations

import argparse

from baton.cli.common import Client, CliError, duration, print_json, steps, table
from baton.cli.models import format_models

__all__ = ["add_commands", "format_rollout", "run"]


def add_commands(sub, flags: argparse.ArgumentParser) -> None:
    rollout = sub.add_parser("rollout", parents=[flags], help="staged canary rollouts")
    rollout.add_argument(
        "action", choices=["start", "status", "promote", "pause", "resume", "abort"]
    )
    rollout.add_argument("model")
    rollout.add_argument("--to", type=int, metavar="VERSION", help="candidate version (start)")
    rollout.add_argument("--steps", type=steps, help="weights in %%, e.g. 1,5,25,50,100 (start)")
    rollout.add_argument("--interval", type=duration, help="time per step, e.g. 30s or 2m")
    rollout.add_argument("--wait", type=duration, default=30.0, metavar="DURATION",
                         help="how long to wait for an action to take effect")  # fmt: skip


def run(args: argparse.Namespace) -> None:
    client = Client.of(args, timeout=args.wait + 300)
    path = f"/admin/models/{args.model}/rollout"
    if args.action == "start":
        if args.to is None:
            raise CliError("rollout start: give --to VERSION", code=2)
        body: dict = {"version": args.to}
        if args.steps is not None:
            body["steps"] = args.steps
        if args.interval is not None:
            body["interval"] = args.interval
        view = client.call("POST", path, body)
    elif args.action == "status":
        view = client.call("GET", path)
    else:
        view = client.call("POST", f"{path}/{args.action}", wait=f"{args.wait}s")
    if args.json:
        print_json(view)
        return
    if "change" in view:
        print(view["change"])
    if view["rollout"] is not None or args.action == "status":
        print(format_rollout(args.model, view))
    if "model_view" in view:
        print(format_models([view["model_view"]]))


def format_rollout(model: str, view: dict) -> str:
    """The text ``baton rollout`` prints for the admin API's rollout view."""
    r = view["rollout"]
    if r is None:
        last = view.get("last")
        if last:
            return (f"{model}: no rollout in progress; the last one, v{last['stable']} → "
                    f"v{last['candidate']}, ended {last['status']}"
                    + (f" ({last['reason']})" if last.get("reason") else ""))  # fmt: skip
        return f"{model}: no rollout in progress"
    steps_ = " → ".join(f"{s:g}%" for s in r["steps"])
    lines = [
        f"{model}: {r['status']} v{r['stable']} → v{r['candidate']}, step {r['step'] + 1}"
        f"/{len(r['steps'])} ({steps_}), candidate weight {r['weight'] * 100:g}%"
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
        lines.append(table(["VERSION", "REQUESTS", "ERRORS", "P99 MS", "SHADOW"], rows))
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
