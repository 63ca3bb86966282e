"""Open Inference Protocol (KServe v2) over HTTP: health, metadata, model repository, metrics.
Inference itself is served by :mod:`baton.api.http.fast_infer` in front of these routes.

Handlers only translate: body → :class:`InferRequest` → :class:`DataPlane` → body. Errors are
answered as ``{"error": "..."}`` with the status the error class carries (see
:mod:`baton.errors`).
"""

from __future__ import annotations

from dataclasses import asdict

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from baton.api.context import context
from baton.errors import InvalidRequest, PayloadTooLarge
from baton.types import is_digits

__all__ = ["json_body", "json_response", "read_body", "routes"]


def json_response(content: object, status: int = 200) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS), status, media_type="application/json"
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before buffering it."""
    declared = request.headers.get("content-length")
    if declared is not None and is_digits(declared) and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request) -> dict:
    body = await read_body(request, 1024 * 1024)
    if not body.strip():
        return {}
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidRequest("request body must be a JSON object")
    return doc


async def server_live(request: Request) -> Response:
    return json_response({"live": True})


async def server_ready(request: Request) -> Response:
    ready = context(request).dataplane.ready()
    return json_response({"ready": ready}, 200 if ready else 503)


async def server_metadata(request: Request) -> Response:
    return json_response(context(request).dataplane.server_metadata())


async def model_metadata(request: Request) -> Response:
    p = request.path_params
    return json_response(context(request).dataplane.model_metadata(p["model"], p.get("version")))


async def model_ready(request: Request) -> Response:
    p = request.path_params
    ctx = context(request)
    ctx.manager.model(p["model"])  # 404 for an unknown model
    if ctx.dataplane.model_ready(p["model"], p.get("version")):
        return json_response({"name": p["model"], "ready": True})
    return json_response({"error": ctx.dataplane.why_not_ready(p["model"], p.get("version"))}, 400)


async def repository_index(request: Request) -> Response:
    doc = await json_body(request)
    rows = context(request).repository.index(ready_only=doc.get("ready") is True)
    return json_response(
        [{k: v for k, v in asdict(row).items() if v or k != "reason"} for row in rows]
    )


async def repository_load(request: Request) -> Response:
    await json_body(request)
    await context(request).repository.load(request.path_params["model"])
    return json_response({})


async def repository_unload(request: Request) -> Response:
    await json_body(request)
    await context(request).repository.unload(request.path_params["model"])
    return json_response({})


async def metrics(request: Request) -> Response:
    ctx = context(request)
    body = await ctx.metrics_text() if ctx.metrics_text is not None else ctx.metrics.render()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


routes = [
    Route("/v2/health/live", server_live),
    Route("/v2/health/ready", server_ready),
    Route("/v2", server_metadata),
    Route("/v2/models/{model}", model_metadata),
    Route("/v2/models/{model}/versions/{version}", model_metadata),
    Route("/v2/models/{model}/ready", model_ready),
    Route("/v2/models/{model}/versions/{version}/ready", model_ready),
    Route("/v2/repository/index", repository_index, methods=["POST"]),
    Route("/v2/repository/models/{model}/load", repository_load, methods=["POST"]),
    Route("/v2/repository/models/{model}/unload", repository_unload, methods=["POST"]),
    Route("/metrics", metrics),
]
