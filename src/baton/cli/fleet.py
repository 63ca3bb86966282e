"""``baton fleet``: see and steer a fleet of nodes through its etcd.

    baton fleet status [--json]
    baton fleet target MODEL VERSION
    baton fleet rollout start MODEL --to V [--waves 1,50%,100%] [--wave-interval 30s]
                                           [--max-loading K] [--max-error-rate 1%] ...
    baton fleet rollout status|pause|resume|promote|abort MODEL
    baton fleet audit [--model M] [--limit N]

The fleet is ``--fleet etcd://HOST:PORT[,HOST:PORT]`` (``$BATON_FLEET``) and
``--fleet-name NAME`` (``$BATON_FLEET_NAME``, default ``default``). Whoever can write to that
etcd steers the fleet: protect it (client certificates, network policy) as you would the
admin API.
"""

from __future__ import annotations

import argparse
import os
import time

from baton.cli.common import CliError, Parser, duration, print_json, steps, table

__all__ = ["add_commands", "format_status", "run"]

ACTIONS = ("start", "status", "pause", "resume", "promote", "abort")


def _percent(text: str) -> float:
    """argparse type: ``1%`` or ``0.01`` → a fraction."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate: use e.g. 1% or 0.01") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0% and 100%")
    return value


def _whole(minimum: int, what: str):
    """argparse type: a whole number of at least ``minimum``, else ``'x' is not <what>``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


_positive = _whole(1, "a whole number of at least 1")
_version = _whole(0, "a version number")


def _waves(text: str) -> str:
    """argparse type: a wave spec such as ``1,50%,100%`` (checked here, kept as text)."""
    from baton.fleet.waves import parse_waves

    try:
        parse_waves(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_commands(sub, flags: argparse.ArgumentParser) -> None:
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--fleet",
        metavar="ETCD_URL",
        default=argparse.SUPPRESS,
        help="the fleet's etcd (default: $BATON_FLEET)",
    )
    where.add_argument(
        "--fleet-name",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="the fleet's name (default: $BATON_FLEET_NAME or 'default')",
    )
    parents = [flags, where]
    fleet = sub.add_parser("fleet", parents=parents, help="see and steer a fleet of nodes")
    commands = fleet.add_subparsers(
        dest="fleet_command", required=True, metavar="COMMAND", parser_class=Parser
    )
    commands.add_parser("status", parents=parents, help="every node by every model, and a verdict")
    target = commands.add_parser("target", parents=parents, help="every node serves VERSION now")
    target.add_argument("model")
    target.add_argument("version", type=_version)
    audit = commands.add_parser("audit", parents=parents, help="the fleet's audit log")
    audit.add_argument("--model")
    audit.add_argument("--limit", type=_positive, default=50)
    rollout = commands.add_parser("rollout", parents=parents, help="move the fleet in waves")
    rollout.add_argument("action", choices=ACTIONS)
    rollout.add_argument("model")
    rollout.add_argument("--to", type=_version, metavar="VERSION", help="candidate (start)")
    rollout.add_argument(
        "--waves",
        type=_waves,
        default="1,50%,100%",
        help="cumulative nodes per wave: counts or percentages, ending at 100%% "
        "(default 1,50%%,100%%)",
    )
    rollout.add_argument(
        "--wave-interval",
        type=duration,
        default=30.0,
        metavar="DURATION",
        help="how long a converged wave is watched before the next (30s)",
    )
    rollout.add_argument(
        "--max-loading",
        type=_positive,
        default=1,
        metavar="K",
        help="nodes loading the candidate at once (default 1)",
    )
    rollout.add_argument(
        "--max-error-rate",
        type=_percent,
        default=0.01,
        metavar="RATE",
        help="roll back above this candidate error rate (default 1%%)",
    )
    rollout.add_argument(
        "--max-p99-ratio",
        type=float,
        default=1.5,
        metavar="X",
        help="roll back when the candidate's p99 exceeds X times the stable "
        "version's (default 1.5)",
    )
    rollout.add_argument(
        "--canary-steps",
        type=steps,
        metavar="WEIGHTS",
        help="each node of a wave runs its own canary through these weights in %%, e.g. "
        "1,10,50,100 (default: each node swaps at once)",
    )
    rollout.add_argument(
        "--canary-interval",
        type=duration,
        default=30.0,
        metavar="DURATION",
        help="time per step of a node's canary (default 30s)",
    )
    rollout.add_argument(
        "--min-requests",
        type=int,
        default=50,
        metavar="N",
        help="candidate requests needed before the gates judge (default 50)",
    )


def _store(args: argparse.Namespace):
    url = getattr(args, "fleet", None) or os.environ.get("BATON_FLEET")
    name = getattr(args, "fleet_name", None) or os.environ.get("BATON_FLEET_NAME", "default")
    if not url:
        raise CliError("fleet: give --fleet etcd://HOST:PORT (or set BATON_FLEET)", code=2)
    try:
        from baton.fleet.store import FleetStore
    except ImportError as exc:
        raise CliError(
            f"fleet: needs the fleet extra: pip install 'baton[fleet]' ({exc})"
        ) from None
    try:
        return FleetStore.connect(url, name)
    except ValueError as exc:
        raise CliError(f"fleet: {exc}", code=2) from None


def run(args: argparse.Namespace) -> None:
    from baton.fleet import operations as ops
    from baton.fleet.store import StoreUnavailable

    store = _store(args)
    try:
        _run(args, store, ops)
    except StoreUnavailable as exc:
        raise CliError(f"fleet: cannot reach etcd ({exc})") from None
    except ops.FleetError as exc:
        raise CliError(f"fleet: {exc}") from None
    except ValueError as exc:  # a model or node name that cannot be a key
        raise CliError(f"fleet: {exc}", code=2) from None


def _run(args: argparse.Namespace, store, ops) -> None:
    command = args.fleet_command
    if command == "status":
        state = ops.fleet_state(store)
        if args.json:
            print_json(status_json(state))
        else:
            print(format_status(state, store))
    elif command == "target":
        before = ops.fleet_state(store).targets.get(args.model)
        target = ops.set_target(store, args.model, args.version)
        if before == target:
            print(f"{args.model}: the fleet's target already is version {target.version}")
            return
        print(
            f"{args.model}: the fleet's target is now version {target.version} "
            f"(digest {target.digest[:12]}); nodes load it now"
        )
    elif command == "audit":
        entries = ops.fleet_audit(store, args.model, args.limit)
        if args.json:
            print_json(entries)
            return
        rows = [
            [
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.get("time", 0))),
                e.get("kind"),
                e.get("model"),
                e.get("message"),
            ]
            for e in entries
        ]
        print(
            table(["TIME", "KIND", "MODEL", "MESSAGE"], rows) if rows else "no fleet audit entries"
        )
    else:
        _rollout(args, store, ops)


def _rollout(args: argparse.Namespace, store, ops) -> None:
    from baton.fleet.rollout import FleetGates

    if args.action == "start":
        if args.to is None:
            raise CliError("fleet rollout start: give --to VERSION", code=2)
        options = ops.RolloutOptions(
            args.waves,
            args.wave_interval,
            args.max_loading,
            FleetGates(args.max_error_rate, args.max_p99_ratio, args.min_requests),
            tuple(args.canary_steps or ()),
            args.canary_interval,
        )
        r = ops.start_rollout(store, args.model, args.to, options)
        print(
            f"{args.model}: rollout v{r.stable.version} → v{r.candidate.version} started: "
            f"waves of {'/'.join(map(str, r.sizes))} of {len(r.order)} nodes "
            f"({', '.join(r.order)}); follow it with 'baton fleet rollout status "
            f"{args.model}'"
        )
        return
    if args.action != "status":
        _, change = ops.operate_rollout(store, args.model, args.action)
        print(change)
        return
    state = ops.fleet_state(store)
    rollout = state.rollouts.get(args.model)
    if args.json:
        print_json(status_json(state)["rollouts"].get(args.model))
    elif rollout is None:
        print(f"{args.model}: no fleet rollout")
    else:
        print(format_rollout(rollout, ops.node_views(state), state.time))


def status_json(state) -> dict:
    from baton.fleet.operations import node_views
    from baton.fleet.rollout import gate_values, to_json

    views = node_views(state)
    rollouts = {}
    for model, r in state.rollouts.items():
        doc = to_json(r)
        values = gate_values(r, views)
        doc["gate_values"] = {
            "requests": values.requests,
            "errors": values.errors,
            "error_rate": values.error_rate,
            "p99_ratio": values.p99_ratio,
        }
        doc["eta_s"] = eta(r, state.time)
        rollouts[model] = doc
    v = state.verdict
    return {
        "time": state.time,
        "coordinator": state.leader,
        "verdict": {
            "status": v.status,
            "diverged": list(v.diverged),
            "converging": list(v.converging),
        },
        "targets": {
            m: {"version": t.version, "digest": t.digest} for m, t in state.targets.items()
        },
        "rollouts": rollouts,
        "nodes": state.reports,
        "cells": [
            {
                "node": c.node,
                "model": c.model,
                "state": c.state,
                "why": c.why,
                "serves": c.serves,
                "digest": c.digest,
                "want": c.want.version if c.want else None,
            }
            for c in v.cells
        ],
    }


def eta(r, now: float) -> float | None:
    """Seconds until a running rollout can end at the earliest (the waves' intervals left; the
    nodes' load times come on top). ``None`` when it is not running."""
    if r.status != "RUNNING":
        return None
    left = (len(r.sizes) - r.wave - 1) * r.interval
    current = r.interval - (now - r.settled_at) if r.settled_at is not None else r.interval
    return max(0.0, current) + left


def format_rollout(r, views, now: float) -> str:
    from baton.fleet.rollout import gate_values

    values = gate_values(r, views)
    rate = f"{values.error_rate:.2%}" if values.error_rate is not None else "-"
    ratio = f"{values.p99_ratio:.2f}x" if values.p99_ratio is not None else "-"
    wave = f"wave {r.wave + 1}/{len(r.sizes)} (nodes per wave {'/'.join(map(str, r.sizes))})"
    if r.canary_steps:
        weights = "/".join(f"{w:g}%" for w in r.canary_steps)
        wave += f", each node a canary {weights} every {r.canary_interval:g}s"
    line = f"{r.model}: {r.status} v{r.stable.version} → v{r.candidate.version}, {wave}"
    if r.reason:
        line += f" — {r.reason}"
    g = r.gates
    return "\n".join(
        [
            line,
            f"  on the candidate: {', '.join(r.waved) or 'no node'}; waiting: "
            f"{', '.join(n for n in r.order if n not in r.waved) or 'no node'}",
            f"  gates: {values.requests} candidate requests (judged from {g.min_requests}), "
            f"error rate {rate} (max {_limit(g.max_error_rate, '.2%')}), p99 ratio {ratio} "
            f"(max {_limit(g.max_p99_ratio, 'g')})",
        ]
    )


def _limit(value: float | None, spec: str) -> str:
    return "none" if value is None else format(value, spec)


def format_status(state, store) -> str:
    from baton.fleet.operations import node_views

    lines = [
        f"fleet {store.keys.root.split('/')[2]}: {len(state.reports)} live node(s), "
        f"coordinator {state.leader or 'none elected'}"
    ]
    if state.reports:
        rows = []
        for node, r in sorted(state.reports.items()):
            age = state.time - float(r.get("time", state.time))
            rows.append(
                [
                    node,
                    r.get("zone") or "-",
                    r.get("address"),
                    f"{age:.1f}s",
                    "yes" if r.get("ready") else "no",
                    r.get("store"),
                ]
            )
        lines += ["", table(["NODE", "ZONE", "ADDRESS", "REPORTED", "READY", "ETCD"], rows)]
    cells = [c for c in state.verdict.cells if c.state != "unmanaged" or c.serves is not None]
    if cells:
        rows = [
            [
                c.model,
                c.node,
                f"v{c.want.version}" if c.want else "-",
                f"v{c.serves}" if c.serves is not None else "-",
                (c.digest or "-")[:12],
                c.state,
                c.why,
            ]
            for c in cells
        ]
        lines += ["", table(["MODEL", "NODE", "WANTS", "SERVES", "DIGEST", "STATE", "WHY"], rows)]
    views = node_views(state)
    for r in state.rollouts.values():
        if not r.finished:
            lines += ["", format_rollout(r, views, state.time)]
    v = state.verdict
    if v.status == "diverged":
        verdict = f"diverged: {'; '.join(v.diverged)}"
    elif v.status == "converging":
        etas = [e for r in state.rollouts.values() if (e := eta(r, state.time)) is not None]
        when = f" (ETA at least {max(etas):.0f}s)" if etas else ""
        verdict = f"converging{when}: {'; '.join(v.converging) or 'a rollout is under way'}"
    else:
        verdict = "converged: every live node serves what the fleet wants"
    return "\n".join([*lines, "", f"verdict: {verdict}"])
