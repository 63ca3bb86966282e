"""The model commands of the ``baton`` CLI: ``models``, ``pin``, ``unpin``, ``rollback``,
``label``, ``events``, ``audit`` and ``rescan``, all through the admin API.

An action prints one line saying what changed, then the model's table as it is after the
action (the server answers once the action has taken effect, failed, or ``--wait`` ran out).
"""

from __future__ import annotations

import argparse
from datetime import datetime

from baton.cli.common import Client, duration, print_json, table

__all__ = ["COMMANDS", "add_commands", "format_models", "run"]

COMMANDS = ("models", "pin", "unpin", "rollback", "label", "events", "audit", "rescan")


def add_commands(sub, flags: argparse.ArgumentParser) -> None:
    sub.add_parser("models", parents=[flags], help="list models, versions and their states")
    pin = sub.add_parser("pin", parents=[flags], help="serve exactly one version until unpinned")
    pin.add_argument("model")
    pin.add_argument("version", type=int)
    unpin = sub.add_parser("unpin", parents=[flags], help="let the version policy decide again")
    unpin.add_argument("model")
    rollback = sub.add_parser(
        "rollback", parents=[flags], help="pin the version that served before the current one"
    )
    rollback.add_argument("model")
    label = sub.add_parser("label", parents=[flags], help="point a label at a version")
    label.add_argument("model")
    label.add_argument("label")
    label.add_argument("version", type=int)
    for action in (pin, unpin, rollback, label):
        action.add_argument(
            "--wait", type=duration, default=30.0, metavar="DURATION",
            help="how long to wait for the action to take effect (default 30s)",
        )  # fmt: skip
    events = sub.add_parser("events", parents=[flags], help="recent events (in memory)")
    events.add_argument("--model")
    events.add_argument("--limit", type=int, default=30)
    audit = sub.add_parser("audit", parents=[flags], help="the persistent audit log")
    audit.add_argument("--model")
    audit.add_argument("--limit", type=int, default=30)
    sub.add_parser("rescan", parents=[flags], help="look at the model repository now")


def format_models(models: list[dict]) -> str:
    """The table ``baton models`` prints for the admin API's model views."""
    rows = []
    for m in models:
        for v in m["versions"]:
            marks = []
            if v["version"] == m["default_version"]:
                marks.append("default")
            if v["version"] == m["pinned"]:
                marks.append("pinned" if m.get("pending_pin") != v["version"] else "pin pending")
            marks += [f"@{label}" for label, lv in m["labels"].items() if lv == v["version"]]
            pending = m.get("pending_update")
            if pending and v["version"] == pending["version"]:
                marks.append(f"waiting ({pending['waiting_for']})")
            if v.get("rejected"):
                marks.append("rolled back")
            if v.get("sequences") is not None:
                count = v["sequences"]
                marks.append(f"{count} sequence{'' if count == 1 else 's'}")
            rows.append([m["name"], v["version"], v["state"], v["inflight"], " ".join(marks),
                         v["message"] or ""])  # fmt: skip
        if not m["versions"]:
            rows.append([m["name"], "", "no versions", "", "", m["config_error"] or ""])
        elif m.get("config_error"):  # the last valid settings hold meanwhile
            rows.append([m["name"], "", "model.yaml", "", "invalid", m["config_error"]])
    return table(["MODEL", "VERSION", "STATE", "INFLIGHT", "ROUTING", "LAST ERROR"], rows)


def _events(entries: list[dict]) -> str:
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
        for e in entries
    ]
    return table(["TIME", "MODEL", "VERSION", "EVENT", "STATE", "REASON", "MESSAGE"], rows)


def run(args: argparse.Namespace) -> None:
    client = Client.of(args, timeout=getattr(args, "wait", 0) + 60)
    cmd = args.command
    if cmd == "models":
        doc = client.call("GET", "/admin/models")
        print_json(doc) if args.json else print(format_models(doc))
        return
    if cmd == "events":
        params = {"limit": args.limit} | ({"model": args.model} if args.model else {})
        doc = client.call("GET", "/admin/events", **params)
        print_json(doc) if args.json else print(_events(doc))
        return
    if cmd == "audit":
        entries, torn, params = [], 0, {"limit": 1000}
        while len(entries) < args.limit:  # newest pages first, until enough match
            doc = client.call("GET", "/admin/audit", **params)
            page = [e for e in doc["entries"] if not args.model or e.get("model") == args.model]
            entries[:0], torn = page, torn + doc["torn_lines"]
            if doc["before"] is None:
                break
            params["before"] = doc["before"]
        entries = entries[-args.limit :] if args.limit else []
        if args.json:
            print_json({"entries": entries, "torn_lines": torn, "path": doc["path"]})
        else:
            skipped = f", {torn} torn lines skipped" if torn else ""
            print(f"{doc['path']}: {len(entries)} entries shown{skipped}")
            print(_events(entries))
        return
    if cmd == "rescan":
        doc = client.call("POST", "/admin/repository/rescan")
        print_json(doc) if args.json else print("rescanned; models:", ", ".join(doc["models"]))
        return
    path = f"/admin/models/{args.model}"
    wait = f"{args.wait}s"
    if cmd == "pin":
        doc = client.call("POST", f"{path}/pin", {"version": args.version}, wait=wait)
    elif cmd == "unpin":
        doc = client.call("DELETE", f"{path}/pin", wait=wait)
    elif cmd == "rollback":
        doc = client.call("POST", f"{path}/rollback", wait=wait)
    else:
        doc = client.call("PUT", f"{path}/labels/{args.label}", {"version": args.version},
                          wait=wait)  # fmt: skip
    if args.json:
        print_json(doc)
    else:
        print(doc["change"])
        print(format_models([doc["model"]]))
