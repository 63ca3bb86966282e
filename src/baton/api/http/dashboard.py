"""``/dashboard``: the live page, its script and style sheet, and its event stream.

The page and its two files are static and open (they hold no data); everything shown comes from
``/dashboard/stream`` (:mod:`baton.api.http.live`), which needs the ``read`` scope where tokens
are configured — the page asks for a token and keeps it in memory. A strict content security
policy allows nothing but this server's own script, style and connections.
"""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from baton.api.http.live import stream

__all__ = ["routes"]

_TYPES = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_FILES = {name: files("baton.api.ui").joinpath(name).read_bytes() for name in _TYPES}
_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def _file(name: str):
    async def serve(request: Request) -> Response:
        return Response(_FILES[name], media_type=_TYPES[name], headers=_HEADERS)

    return serve


routes = [
    Route("/dashboard", _file("dashboard.html")),
    Route("/dashboard/", _file("dashboard.html")),
    Route("/dashboard/dashboard.js", _file("dashboard.js")),
    Route("/dashboard/dashboard.css", _file("dashboard.css")),
    Route("/dashboard/stream", stream),
]
