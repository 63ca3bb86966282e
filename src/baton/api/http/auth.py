"""The HTTP side of the access policy: an ASGI gate in front of every route.

Each request's scope comes from its method and path (:func:`baton.api.auth.http_scope`); a
request without what it needs is answered 401 (with ``WWW-Authenticate: Bearer``) or 403, with
the reason, before any route sees it. An accepted ``operate`` request is recorded as a
``control`` event — in the audit log with the token's name.
"""

from __future__ import annotations

import orjson

from baton.api.auth import AccessPolicy, http_scope
from baton.errors import BatonError
from baton.observe.events import EventBus

__all__ = ["AuthGate"]


class AuthGate:
    def __init__(self, app, policy: AccessPolicy, events: EventBus) -> None:
        self.app = app
        self.policy = policy
        self.events = events

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        need = http_scope(method, path)
        if need is not None:
            authorization = None
            for key, value in scope["headers"]:
                if key == b"authorization":
                    authorization = value.decode("latin-1")
                    break
            try:
                who = self.policy.check(need, authorization)
            except BatonError as exc:
                await _refuse(send, exc)
                return
            if need == "operate":
                data = {"token": who, "method": method, "path": path}
                self.events.publish("control", "", state="accepted",
                                    message=f"{method} {path}", data=data)  # fmt: skip
        await self.app(scope, receive, send)


async def _refuse(send, exc: BatonError) -> None:
    body = orjson.dumps({"error": str(exc)})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if exc.http_status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="baton"'))
    await send({"type": "http.response.start", "status": exc.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
