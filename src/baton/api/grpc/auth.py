"""The gRPC side of the access policy: a server interceptor.

Each method's scope comes from :func:`baton.api.auth.grpc_scope`; the token travels as metadata
``authorization: Bearer <token>``. A call without what it needs ends at once with
``UNAUTHENTICATED`` or ``PERMISSION_DENIED`` and the reason; an accepted ``operate`` call is
recorded as a ``control`` event (the audit log names the token).

The gRPC server calls the interceptor on one of its own threads; the event is published on the
event loop that was running when the interceptor was made (the loop that owns ``events``),
before the call itself reaches the loop.
"""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from baton.api.auth import AccessPolicy, grpc_scope
from baton.errors import BatonError
from baton.observe.events import EventBus

__all__ = ["AuthInterceptor"]


class AuthInterceptor(grpc.ServerInterceptor):
    """Make it on the event loop that owns ``events`` (or on no loop at all: then events are
    published on the calling thread)."""

    def __init__(self, policy: AccessPolicy, events: EventBus) -> None:
        self.policy = policy
        self.events = events
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
        need = grpc_scope(details.method)
        if need is not None:
            authorization = next(
                (v for k, v in details.invocation_metadata or () if k == "authorization"), None
            )
            if isinstance(authorization, bytes):
                authorization = authorization.decode("latin-1")
            try:
                who = self.policy.check(need, authorization)
            except BatonError as exc:
                streaming = details.method.endswith("/ModelStreamInfer")
                return _deny(grpc.StatusCode[exc.grpc_code], str(exc), streaming)
            if need == "operate":
                self._publish(details.method, who)
        return continuation(details)

    def _publish(self, method: str, who: str | None) -> None:
        fields = {"state": "accepted", "message": method, "data": {"token": who, "method": method}}
        if self._loop is None:
            self.events.publish("control", "", **fields)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is gone
            self._loop.call_soon_threadsafe(lambda: self.events.publish("control", "", **fields))


def _deny(code: grpc.StatusCode, message: str, streaming: bool) -> grpc.RpcMethodHandler:
    def deny(request: object, context: grpc.ServicerContext) -> None:
        context.abort(code, message)

    if streaming:
        return grpc.stream_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)
