"""The gRPC side of the access policy: a server interceptor.

Each method's scope comes from :func:`baton.api.auth.grpc_scope`; the token travels as metadata
``authorization: Bearer <token>``. A call without what it needs ends at once with
``UNAUTHENTICATED`` or ``PERMISSION_DENIED`` and the reason; an accepted ``operate`` call is
recorded as a ``control`` event (the audit log names the token).
"""

from __future__ import annotations

import grpc

from baton.api.auth import AccessPolicy, grpc_scope
from baton.errors import BatonError
from baton.observe.events import EventBus

__all__ = ["AuthInterceptor"]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, policy: AccessPolicy, events: EventBus) -> None:
        self.policy = policy
        self.events = events

    async def intercept_service(self, continuation, details: grpc.HandlerCallDetails):
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
                return _deny(grpc.StatusCode[exc.grpc_code], str(exc))
            if need == "operate":
                self.events.publish("control", "", state="accepted", message=details.method,
                                    data={"token": who, "method": details.method})  # fmt: skip
        return await continuation(details)


def _deny(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def deny(request, context: grpc.aio.ServicerContext):
        await context.abort(code, message)

    return grpc.unary_unary_rpc_method_handler(deny)
