"""Baton's own admin API under ``/admin``: versions and their states, pins, rollback, labels,
rollouts, recent events, the audit log, an immediate rescan, and an OpenAPI description of all
of it at ``/admin/openapi.json`` (built from the handlers' docstrings and the pydantic bodies).

Every action answers once it has taken effect (or failed, or ``?wait=`` seconds passed, default
30): ``{"change": "<one line: what changed>", "model": <the model as it is now>, ...}`` with 200,
or 202 when it is still under way. A refused action is a 4xx whose message says why.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.schemas import SchemaGenerator

from baton import __version__
from baton.api.context import ApiContext, context
from baton.api.http.rest import json_body, json_response
from baton.control.lifecycle import AVAILABLE, VersionState
from baton.control.records import ModelRecord, VersionRecord
from baton.control.rollouts import describe, rollout_windows
from baton.errors import Conflict, InvalidRequest, NotFound, Unavailable
from baton.observe.audit import tail_audit_log
from baton.rollout.controller import ACTIONS
from baton.rollout.schedule import RolloutPlan
from baton.settings import parse_duration
from baton.types import is_digits

__all__ = ["model_view", "routes"]

S = VersionState
DEFAULT_WAIT = 30.0
MAX_AUDIT_PAGE = 1000
SETTLE_AFTER = 2.0  # after an action took effect, how long to wait for drains to finish


class VersionBody(BaseModel):
    """Names one version of a model."""

    version: int = Field(ge=1, description="version number")


def _version_body(doc: dict) -> int:
    try:
        return VersionBody.model_validate(doc).version
    except ValidationError as exc:
        raise InvalidRequest(f'body must be {{"version": <positive integer>}}: {exc}') from None


def _live_sequences(r: VersionRecord | None) -> int | None:
    """Live sequences bound to a loaded stateful version (``None``: not one)."""
    store = r.handle.sequences if r is not None and r.handle is not None else None
    return store.live if store is not None else None


def model_view(m: ModelRecord) -> dict:
    """The admin API's JSON for one model."""
    aspired, rejected = m.aspired(), m.rejected_now()
    versions = []
    for v in sorted(set(m.versions) | set(m.available)):
        r = m.versions.get(v)
        message = r.message if r else None
        if v in rejected:
            message = (
                f"rolled back{f' ({m.last_rollout.reason})' if m.last_rollout else ''}; "
                "skipped until pinned, rolled out again or republished"
            )
        versions.append(
            {
                "version": v,
                "state": r.state.value if r and r.state else AVAILABLE,
                "reason": r.reason if r else None,
                "message": message,
                "inflight": r.handle.inflight if r and r.handle else 0,
                "sequences": _live_sequences(r),
                "since": r.since if r else None,
                "platform": r.platform if r else None,
                "aspired": v in aspired,
                "rejected": v in rejected,
            }
        )
    pending = m.pending_pin
    return {
        "name": m.name,
        "default_version": m.default_version(),
        "pinned": m.pinned,
        "pending_pin": pending.version if pending else None,
        "labels": m.all_labels(),
        "enabled": not m.disabled,
        "version_policy": m.settings.version_policy.describe(),
        "config_error": m.config_error,
        "versions": versions,
        "pending_update": _pending_update(m),
        "rollout": m.rollout.status.value if m.rollout else None,
    }


def _pending_update(m: ModelRecord) -> dict | None:
    """The newer version the update rate limiter is holding back, and why."""
    if m.updates.announced is None:
        return None
    version, kind = m.updates.announced
    return {"version": version, "waiting_for": kind}


def _wait_seconds(request: Request) -> float:
    raw = request.query_params.get("wait")
    if raw is None:
        return DEFAULT_WAIT
    try:
        seconds = parse_duration(raw)
    except ValueError as exc:
        raise InvalidRequest(f"wait: {exc}") from None
    if not 0 <= seconds <= 3600:
        raise InvalidRequest("wait must be between 0 and 3600 seconds")
    return seconds


async def _settle(ctx: ApiContext, m: ModelRecord, request: Request, done) -> bool:
    """Wait (up to ``?wait=``) until ``done()``; then, briefly, until the model has settled
    (retired versions unloaded), so the answer shows the model as it is after the action."""
    took_effect = await ctx.manager.wait_until(done, _wait_seconds(request))
    if took_effect:
        await ctx.manager.wait_until(m.settled, SETTLE_AFTER)
    return took_effect


def _state_of(m: ModelRecord, version: int) -> str:
    r = m.versions.get(version)
    return r.state.value if r and r.state else AVAILABLE


def _answer(change: str, m: ModelRecord, took_effect: bool = True, **extra) -> Response:
    return json_response({"change": change, "model": model_view(m), **extra},
                         200 if took_effect else 202)  # fmt: skip


async def list_models(request: Request) -> Response:
    """
    summary: Every model with its versions, states, labels and in-flight counts.
    responses:
      200: {description: "[Model]"}
    """
    manager = context(request).manager
    return json_response([model_view(m) for _, m in sorted(manager.models().items())])


async def get_model(request: Request) -> Response:
    """
    summary: One model with its versions, states, labels, pin and last errors.
    responses:
      200: {description: Model}
      404: {description: unknown model}
    """
    return json_response(model_view(context(request).manager.model(request.path_params["model"])))


async def _pin_like(request: Request, ctx: ApiContext, m: ModelRecord, version: int,
                    action: str, was: int | None, **extra) -> Response:  # fmt: skip
    """Wait for a pin or rollback to take effect or be refused, and answer."""
    took_effect = await _settle(
        ctx, m, request, lambda: m.pinned != version or m.default_version() == version
    )
    if m.pinned != version:  # refused: it failed to load, and the pin went back
        r = m.versions.get(version)
        detail = f"{r.reason}: {r.message}" if r and r.reason else "it did not load"
        serving = m.default_version()
        raise Conflict(
            f"{action} of '{m.name}' to version {version} refused: it failed to load ({detail}); "
            + (f"version {serving} keeps serving" if serving is not None else "nothing serves")
        )
    verb = "rolled back" if action == "rollback" else "pinned"
    if took_effect:
        change = (
            f"{m.name}: {verb} to version {version}"
            + (f" (was {was})" if was not in (None, version) else "")
            + "; it serves every unversioned request until `baton unpin`"
        )
    else:
        change = (f"{m.name}: {verb} to version {version}; not serving yet "
                  f"({_state_of(m, version)}), see `baton models`")  # fmt: skip
    return _answer(change, m, took_effect, **extra)


async def pin(request: Request) -> Response:
    """
    summary: Serve exactly this version (loading it if needed) until unpinned. Answers once it
      serves (200), is refused because it failed to load (409), or `wait` ran out (202).
    parameters:
      - {name: wait, in: query, schema: {type: string, default: "30s"}}
    requestBody:
      content: {application/json: {schema: {$ref: "#/components/schemas/VersionBody"}}}
    responses:
      200: {description: "{change, model}"}
      202: {description: "{change, model}: still loading"}
      404: {description: unknown model or version}
      409: {description: the version failed to load; the pin was refused}
    """
    ctx, name = context(request), request.path_params["model"]
    version = _version_body(await json_body(request))
    m = ctx.manager.model(name)
    was = m.default_version()
    ctx.manager.pin(name, version)
    return await _pin_like(request, ctx, m, version, "pin", was)


async def unpin(request: Request) -> Response:
    """
    summary: Remove the pin; the model's version policy decides again.
    parameters:
      - {name: wait, in: query, schema: {type: string, default: "30s"}}
    responses:
      200: {description: "{change, model}"}
    """
    ctx, name = context(request), request.path_params["model"]
    m = ctx.manager.model(name)
    had = m.pinned
    ctx.manager.unpin(name)
    took_effect = await _settle(ctx, m, request, m.settled)
    policy = m.settings.version_policy.describe()
    serving = m.default_version()
    before = f"unpinned version {had}" if had is not None else "was not pinned"
    now = f"version {serving} serves" if serving is not None else "nothing serves"
    change = f"{m.name}: {before}; the version policy ({policy}) decides: {now}"
    return _answer(change, m, took_effect)


async def rollback(request: Request) -> Response:
    """
    summary: Pin the version that served before the current one (see pin for the answers).
    parameters:
      - {name: wait, in: query, schema: {type: string, default: "30s"}}
    responses:
      200: {description: "{change, rolled_back_to, model}"}
      409: {description: no earlier version, or it failed to load}
    """
    ctx, name = context(request), request.path_params["model"]
    m = ctx.manager.model(name)
    was = m.default_version()
    target = ctx.manager.rollback(name)
    return await _pin_like(request, ctx, m, target, "rollback", was, rolled_back_to=target)


async def set_label(request: Request) -> Response:
    """
    summary: Point a label (e.g. stable, canary) at a version; a labelled version stays loaded.
    parameters:
      - {name: wait, in: query, schema: {type: string, default: "30s"}}
    requestBody:
      content: {application/json: {schema: {$ref: "#/components/schemas/VersionBody"}}}
    responses:
      200: {description: "{change, model}"}
      409: {description: not a valid label name}
    """
    ctx, p = context(request), request.path_params
    version = _version_body(await json_body(request))
    ctx.manager.set_label(p["model"], p["label"], version)
    m = ctx.manager.model(p["model"])
    took_effect = await _settle(
        ctx, m, request, lambda: _state_of(m, version) in (S.SERVING, S.FAILED)
    )
    change = f"{m.name}: label '{p['label']}' → version {version} ({_state_of(m, version)})"
    return _answer(change, m, took_effect)


async def events(request: Request) -> Response:
    """
    summary: Recent events, oldest first.
    parameters:
      - {name: limit, in: query, schema: {type: integer, default: 100}}
      - {name: model, in: query, schema: {type: string}}
    responses:
      200: {description: "[Event]"}
    """
    q = request.query_params
    recent = context(request).events.recent(_limit(request), q.get("model"))
    return json_response([e.to_json() for e in recent])


def _limit(request: Request, default: int = 100, most: int = 10_000) -> int:
    raw = request.query_params.get("limit", str(default))
    if not is_digits(raw) or int(raw) > most:
        raise InvalidRequest(f"limit must be an integer from 0 to {most}")
    return int(raw)


class RolloutBody(BaseModel):
    """Start a canary rollout of a model to a version."""

    version: int = Field(ge=1, description="the candidate version")
    steps: list[float] | None = Field(default=None, description="weights in %, ending at 100")
    interval: float | None = Field(default=None, ge=0, description="seconds per step")


def rollout_view(m: ModelRecord) -> dict:
    """A model's rollout: the running one (with live windows and the last gate verdict), and
    the last finished one."""
    last = m.last_rollout
    view: dict = {
        "model": m.name,
        "rollout": None,
        "last": describe(last, m.rollout_gates) | {"reason": last.reason} if last else None,
    }
    r = m.rollout
    if r is None:
        return view
    stable, candidate = rollout_windows(m)
    verdict = m.last_verdict
    return view | {
        "rollout": describe(r, m.rollout_gates) | {"reason": r.reason},
        "windows": {
            str(r.stable): asdict(stable) if stable else None,
            str(r.candidate): asdict(candidate) if candidate else None,
        },
        "last_verdict": asdict(verdict) if verdict else None,
    }


async def start_rollout(request: Request) -> Response:
    """
    summary: Roll a model out to a version as a staged canary (loading it first if needed);
      answers once the rollout has started.
    requestBody:
      content: {application/json: {schema: {$ref: "#/components/schemas/RolloutBody"}}}
    responses:
      200: {description: Rollout}
      404: {description: unknown model or version}
      409: {description: a rollout is already running, or the version already serves}
      503: {description: the candidate failed to load}
    """
    ctx, name = context(request), request.path_params["model"]
    try:
        body = RolloutBody.model_validate(await json_body(request))
    except ValidationError as exc:
        raise InvalidRequest(f"bad rollout request: {exc}") from None
    m = ctx.manager.model(name)
    cfg = m.settings.rollout
    try:
        plan = RolloutPlan(
            tuple(body.steps) if body.steps is not None else cfg.steps,
            body.interval if body.interval is not None else cfg.interval,
        )
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    ctx.manager.start_rollout(name, body.version, plan, cfg.gates.config())
    started = await ctx.manager.wait_until(
        lambda: m.rollout is not None or _state_of(m, body.version) == S.FAILED,
        timeout=_wait_seconds(request) if "wait" in request.query_params else 300,
    )
    if m.rollout is None and _state_of(m, body.version) == S.FAILED:
        r = m.versions[body.version]
        raise Unavailable(f"version {body.version} failed to load ({r.reason}): {r.message}")
    view = rollout_view(m)
    r = m.rollout
    change = (
        f"{name}: rollout v{r.stable} → v{r.candidate} {r.status.value.lower()}, "
        f"step 1/{len(r.plan.steps)} at {r.weight * 100:g}%"
        if r is not None
        else f"{name}: rollout to version {body.version} requested; loading it first"
    )
    return json_response(view | {"change": change, "model_view": model_view(m)},
                         200 if started else 202)  # fmt: skip


async def get_rollout(request: Request) -> Response:
    """
    summary: "The model's rollout: step, weight, live windows and the last gate verdict."
    responses:
      200: {description: Rollout}
    """
    return json_response(rollout_view(context(request).manager.model(request.path_params["model"])))


async def rollout_action(request: Request) -> Response:
    """
    summary: Pause, resume, promote (skip to 100 %) or abort (back to stable) a rollout;
      answers once the versions it leaves have been retired.
    parameters:
      - {name: wait, in: query, schema: {type: string, default: "30s"}}
    responses:
      200: {description: "Rollout, with change and model_view"}
      409: {description: no rollout in progress}
    """
    ctx, p = context(request), request.path_params
    action = p["action"]
    if action not in ACTIONS:
        raise NotFound(f"unknown rollout action '{action}'; use one of {', '.join(ACTIONS)}")
    m = ctx.manager.model(p["model"])
    new = ctx.manager.rollout_action(p["model"], action)
    took_effect = await _settle(ctx, m, request, m.settled)
    stable, candidate = f"v{new.stable}", f"v{new.candidate}"
    change = {
        "pause": f"paused at step {new.step + 1}/{len(new.plan.steps)} "
        f"({new.weight * 100:g}% to {candidate})",
        "resume": f"resumed at step {new.step + 1}/{len(new.plan.steps)} "
        f"({new.weight * 100:g}% to {candidate})",
        "promote": f"promoted: {candidate} serves all traffic; {stable} retired",
        "abort": f"aborted: {stable} serves all traffic; {candidate} retired and set aside "
        f"(`baton pin {m.name} {new.candidate}` or `baton rollout start {m.name} "
        f"--to {new.candidate}` brings it back)",
    }[action]
    return json_response(rollout_view(m) | {"change": f"{m.name}: rollout {stable} → "
                                           f"{candidate} {change}", "model_view": model_view(m)},
                         200 if took_effect else 202)  # fmt: skip


async def audit(request: Request) -> Response:
    """
    summary: The persistent audit log (survives restarts), newest page first, read off the
      event loop; follow `before` for older pages.
    parameters:
      - {name: limit, in: query, schema: {type: integer, default: 100, maximum: 1000}}
      - {name: before, in: query, schema: {type: integer}, description: "byte offset from the
          previous page's answer"}
    responses:
      200: {description: "{entries (oldest first), torn_lines, before, path}"}
      404: {description: the server keeps no audit log}
    """
    ctx = context(request)
    if ctx.audit_path is None:
        raise NotFound("this server keeps no audit log")
    limit = _limit(request, default=100, most=MAX_AUDIT_PAGE)
    raw = request.query_params.get("before")
    if raw is not None and not is_digits(raw):
        raise InvalidRequest("before must be a byte offset from a previous page's answer")
    page = await asyncio.to_thread(
        tail_audit_log, ctx.audit_path, limit, int(raw) if raw is not None else None
    )
    return json_response({"entries": page.entries, "torn_lines": page.torn,
                          "before": page.before, "path": str(ctx.audit_path)})  # fmt: skip


async def rescan(request: Request) -> Response:
    """
    summary: Look at every source now instead of at the next poll.
    responses:
      200: {description: "{models}"}
    """
    ctx = context(request)
    await ctx.repository.refresh()
    return json_response({"models": sorted(ctx.manager.models())})


_schemas = SchemaGenerator(
    {
        "openapi": "3.0.3",
        "info": {"title": "Baton admin API", "version": __version__},
        "components": {
            "schemas": {
                "VersionBody": VersionBody.model_json_schema(),
                "RolloutBody": RolloutBody.model_json_schema(),
            }
        },
    }
)


async def openapi(request: Request) -> Response:
    """
    summary: This description.
    responses:
      200: {description: OpenAPI 3 document}
    """
    return json_response(_schemas.get_schema(routes))


routes = [
    Route("/admin/models", list_models),
    Route("/admin/models/{model}", get_model),
    Route("/admin/models/{model}/pin", pin, methods=["POST"]),
    Route("/admin/models/{model}/pin", unpin, methods=["DELETE"]),
    Route("/admin/models/{model}/rollback", rollback, methods=["POST"]),
    Route("/admin/models/{model}/labels/{label}", set_label, methods=["PUT"]),
    Route("/admin/events", events),
    Route("/admin/models/{model}/rollout", start_rollout, methods=["POST"]),
    Route("/admin/models/{model}/rollout", get_rollout),
    Route("/admin/models/{model}/rollout/{action}", rollout_action, methods=["POST"]),
    Route("/admin/audit", audit),
    Route("/admin/repository/rescan", rescan, methods=["POST"]),
    Route("/admin/openapi.json", openapi),
]
