"""The hot route, served as raw ASGI: ``POST /v2/models/{m}[/versions/{v}]/infer``.

This is the only implementation of infer over HTTP; every other route goes through Starlette.
Inference requests skip Starlette's router,
middleware and Request/Response objects (they cost as much per request as everything Baton
itself does), but get the same codec, data plane, errors and metrics as the rest of the API.
"""

from __future__ import annotations

import logging

import orjson

from baton.api.context import ApiContext
from baton.api.http.codec import decompress, encode_response, parse_request
from baton.api.internal import internal_error
from baton.errors import BatonError, PayloadTooLarge
from baton.types import is_digits

__all__ = ["FastInferPath", "infer_route"]

log = logging.getLogger("baton.api")
ASGIApp = object  # an ASGI callable


def infer_route(path: str) -> tuple[str, str | None] | None:
    """``(model, version)`` for an infer path, else ``None``. No regex: split once."""
    parts = path.split("/")
    # ["", "v2", "models", m, "infer"] or ["", "v2", "models", m, "versions", v, "infer"]
    if len(parts) == 5 and parts[4] == "infer" and parts[1] == "v2" and parts[2] == "models":
        return (parts[3], None) if parts[3] else None
    if (
        len(parts) == 7
        and parts[6] == "infer"
        and parts[1] == "v2"
        and parts[2] == "models"
        and parts[4] == "versions"
        and parts[3]
        and parts[5]
    ):
        return parts[3], parts[5]
    return None


class FastInferPath:
    """ASGI wrapper: infer requests are answered here, everything else by ``app``."""

    def __init__(self, app, ctx: ApiContext) -> None:
        self.app = app
        self.ctx = ctx
        self.limit = ctx.settings.max_request_bytes

    async def __call__(self, scope, receive, send) -> None:
        route = infer_route(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
        elif scope["method"] == "POST":
            await self._infer(scope, receive, send, *route)
        else:
            await _respond(send, 405, _error("infer takes POST"), {"allow": "POST"})

    async def _infer(self, scope, receive, send, model: str, version: str | None) -> None:
        headers = dict(scope["headers"])
        try:
            body = await self._body(headers, receive)
            if body is None:
                return  # the client went away
            encoding = headers.get(b"content-encoding")
            if encoding is not None:
                body = decompress(body, encoding.decode("latin-1"), self.limit)
            length = headers.get(b"inference-header-content-length")
            parsed = parse_request(body, None if length is None else length.decode("latin-1"))
            session = headers.get(b"x-baton-session")
            if session is not None:
                parsed.request.session = session.decode("latin-1")
            result = await self.ctx.dataplane.infer(model, version, parsed.request)
            content, extra = encode_response(result, parsed)
            status = 200
        except BatonError as exc:
            label = self.ctx.dataplane.metric_model(model)
            self.ctx.metrics.rejected.labels(label, str(exc.http_status)).inc()
            status, content, extra = exc.http_status, _error(str(exc)), {}
        except Exception:
            message = internal_error(log, f"unexpected error on {scope['path']}")
            status, content, extra = 500, _error(message), {}
        await _respond(send, status, content, extra)

    async def _body(self, headers: dict[bytes, bytes], receive) -> bytes | None:
        declared = headers.get(b"content-length")
        if declared is not None and is_digits(declared) and int(declared) > self.limit:
            raise PayloadTooLarge(
                f"request body of {int(declared)} bytes exceeds the {self.limit}-byte limit"
            )
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise PayloadTooLarge(f"request body exceeds the {self.limit}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(send, status: int, content: bytes, headers: dict[str, str]) -> None:
    response_headers = [
        (b"content-type", headers.pop("content-type", "application/json").encode()),
        (b"content-length", str(len(content)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": content})


def _error(message: str) -> bytes:
    return orjson.dumps({"error": message})
