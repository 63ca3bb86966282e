"""Baton's own admin API under ``/admin``: versions and their states, pins, rollback, labels,
recent events, an immediate rescan, and an OpenAPI description of all of it at
``/admin/openapi.json`` (built from the handlers' docstrings and the pydantic bodies)."""

from __future__ import annotations

from dataclasses import asdict

from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.schemas import SchemaGenerator

from baton import __version__
from baton.api.context import context
from baton.api.http.rest import json_body, json_response
from baton.control.lifecycle import VersionState
from baton.control.records import ModelRecord
from baton.control.rollouts import describe
from baton.errors import InvalidRequest, NotFound, Unavailable
from baton.observe.audit import read_audit_log
from baton.rollout.schedule import RolloutPlan

__all__ = ["model_view", "routes"]


class VersionBody(BaseModel):
    """Names one version of a model."""

    version: int = Field(ge=1, description="version number")


def _version_body(doc: dict) -> int:
    try:
        return VersionBody.model_validate(doc).version
    except ValidationError as exc:
        raise InvalidRequest(f'body must be {{"version": <positive integer>}}: {exc}') from None


def model_view(record: ModelRecord) -> dict:
    """The admin API's JSON for one model."""
    versions = []
    for v in sorted(set(record.versions) | set(record.available)):
        r = record.versions.get(v)
        versions.append(
            {
                "version": v,
                "state": r.state.value if r and r.state else "AVAILABLE",
                "reason": r.reason if r else None,
                "message": r.message if r else None,
                "inflight": r.handle.inflight if r and r.handle else 0,
                "since": r.since if r else None,
                "platform": r.platform if r else None,
                "aspired": v in record.aspired(),
            }
        )
    return {
        "name": record.name,
        "default_version": record.default_version(),
        "pinned": record.pinned,
        "labels": record.all_labels(),
        "enabled": not record.disabled,
        "version_policy": record.settings.version_policy.describe(),
        "config_error": record.config_error,
        "versions": versions,
        "pending_update": _pending_update(record),
    }


def _pending_update(record: ModelRecord) -> dict | None:
    """The newer version the update rate limiter is holding back, and why."""
    if record.updates.announced is None:
        return None
    version, kind = record.updates.announced
    return {"version": version, "waiting_for": kind}


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


async def pin(request: Request) -> Response:
    """
    summary: Serve exactly this version (loading it if needed) until unpinned.
    requestBody:
      content: {application/json: {schema: {$ref: "#/components/schemas/VersionBody"}}}
    responses:
      200: {description: Model}
      404: {description: unknown model or version}
    """
    manager, name = context(request).manager, request.path_params["model"]
    manager.pin(name, _version_body(await json_body(request)))
    return json_response(model_view(manager.model(name)))


async def unpin(request: Request) -> Response:
    """
    summary: Remove the pin; the model's version policy decides again.
    responses:
      200: {description: Model}
    """
    manager, name = context(request).manager, request.path_params["model"]
    manager.unpin(name)
    return json_response(model_view(manager.model(name)))


async def rollback(request: Request) -> Response:
    """
    summary: Pin the version that served before the current one.
    responses:
      200: {description: "{rolled_back_to, model}"}
      409: {description: no earlier version}
    """
    manager, name = context(request).manager, request.path_params["model"]
    target = manager.rollback(name)
    return json_response({"rolled_back_to": target, "model": model_view(manager.model(name))})


async def set_label(request: Request) -> Response:
    """
    summary: Point a label (e.g. stable, canary) at a version; a labelled version stays loaded.
    requestBody:
      content: {application/json: {schema: {$ref: "#/components/schemas/VersionBody"}}}
    responses:
      200: {description: Model}
    """
    manager, p = context(request).manager, request.path_params
    manager.set_label(p["model"], p["label"], _version_body(await json_body(request)))
    return json_response(model_view(manager.model(p["model"])))


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
    try:
        limit = int(q.get("limit", "100"))
    except ValueError:
        raise InvalidRequest("limit must be an integer") from None
    recent = context(request).events.recent(limit, q.get("model"))
    return json_response([e.to_json() for e in recent])


class RolloutBody(BaseModel):
    """Start a canary rollout of a model to a version."""

    version: int = Field(ge=1, description="the candidate version")
    steps: list[float] | None = Field(default=None, description="weights in %, ending at 100")
    interval: float | None = Field(default=None, ge=0, description="seconds per step")


def rollout_view(ctx, name: str) -> dict:
    m = ctx.manager.model(name)
    r = m.rollout
    if r is None:
        return {"model": name, "rollout": None}
    stable, candidate = ctx.rollouts.windows(name)
    verdict = ctx.rollouts.last_verdicts.get(name)
    return {
        "model": name,
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
    candidate = lambda: m.versions.get(body.version)  # noqa: E731
    await ctx.manager.wait_until(
        lambda: (
            m.rollout is not None
            or (candidate() is not None and candidate().state is VersionState.FAILED)
        ),
        timeout=300,
    )
    record = candidate()
    if m.rollout is None and record is not None and record.state is VersionState.FAILED:
        raise Unavailable(f"version {body.version} failed to load: {record.message}")
    return json_response(rollout_view(ctx, name))


async def get_rollout(request: Request) -> Response:
    """
    summary: "The model's rollout: step, weight, live windows and the last gate verdict."
    responses:
      200: {description: Rollout}
    """
    return json_response(rollout_view(context(request), request.path_params["model"]))


async def rollout_action(request: Request) -> Response:
    """
    summary: Pause, resume, promote (skip to 100 %) or abort (back to stable) a rollout.
    responses:
      200: {description: Rollout}
      409: {description: no rollout in progress}
    """
    ctx, p = context(request), request.path_params
    if p["action"] not in ("pause", "resume", "promote", "abort"):
        raise NotFound(f"unknown rollout action '{p['action']}'")
    ctx.rollouts.act(p["model"], p["action"])
    return json_response(rollout_view(ctx, p["model"]))


async def audit(request: Request) -> Response:
    """
    summary: The persistent audit log (survives restarts), oldest first.
    parameters:
      - {name: limit, in: query, schema: {type: integer, default: 100}}
    responses:
      200: {description: "{entries, torn_lines, path}"}
      404: {description: the server keeps no audit log}
    """
    ctx = context(request)
    if ctx.audit_path is None:
        raise NotFound("this server keeps no audit log")
    try:
        limit = int(request.query_params.get("limit", "100"))
    except ValueError:
        raise InvalidRequest("limit must be an integer") from None
    entries, torn = read_audit_log(ctx.audit_path, limit)
    return json_response({"entries": entries, "torn_lines": torn, "path": str(ctx.audit_path)})


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
