"""The HTTP application: v2 REST and admin routes under Starlette, the infer fast path in front.

Errors become ``{"error": "..."}`` with the status their class carries; anything unexpected is
logged with its traceback under a request id and answered 500 naming only that id.

    app = build_app(context, lifespan)   # an ASGI app for uvicorn
    app = build_app(context, None, routes)   # only ``routes`` (a worker's own)
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from baton.api.context import ApiContext
from baton.api.http import admin, dashboard, rest
from baton.api.http.fast_infer import FastInferPath
from baton.api.internal import internal_error
from baton.errors import BatonError

__all__ = ["build_app"]

log = logging.getLogger("baton.api")


def build_app(
    ctx: ApiContext, lifespan: Callable | None, routes: list[BaseRoute] | None = None
) -> FastInferPath:
    """The app over ``routes`` (default: every REST, admin and dashboard route)."""

    async def baton_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BatonError)
        model = ctx.dataplane.metric_model(request.path_params.get("model", ""))
        ctx.metrics.rejected.labels(model, str(exc.http_status)).inc()
        return rest.json_response({"error": str(exc)}, exc.http_status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return rest.json_response({"error": exc.detail}, exc.status_code)

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        where = f"unexpected error on {request.method} {request.url.path}"
        message = internal_error(log, where, exc_info=(type(exc), exc, exc.__traceback__))
        return rest.json_response({"error": message}, 500)

    app = Starlette(
        routes=[*rest.routes, *admin.routes, *dashboard.routes] if routes is None else routes,
        exception_handlers={
            BatonError: baton_error,
            HTTPException: http_error,
            Exception: unexpected_error,
        },
        lifespan=lifespan,
    )
    app.state.baton = ctx
    return FastInferPath(app, ctx)
