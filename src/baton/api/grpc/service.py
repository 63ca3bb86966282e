"""The gRPC servicer: each RPC translates to the shared DataPlane / Repository and back.

Served by ``grpc.aio`` on the same event loop as HTTP, so a swap behaves identically on both
protocols (the same serving map, handles and drain). Errors become gRPC status codes taken
from the error class (:mod:`baton.errors`); unexpected failures are ``INTERNAL``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.message import DecodeError

from baton.api.context import ApiContext
from baton.api.grpc import inference_pb2 as pb
from baton.api.grpc.codec import decode_request, encode_response
from baton.api.internal import internal_error
from baton.errors import BatonError

__all__ = ["InferenceServicer", "start_grpc_server"]

log = logging.getLogger("baton.grpc")
SERVICE = "inference.GRPCInferenceService"


class InferenceServicer:
    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    async def ServerLive(self, request: pb.ServerLiveRequest) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self._ctx.dataplane.live())

    async def ServerReady(self, request: pb.ServerReadyRequest) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._ctx.dataplane.ready())

    async def ModelReady(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        self._ctx.manager.model(request.name)  # NOT_FOUND for an unknown model
        ready = self._ctx.dataplane.model_ready(request.name, request.version or None)
        return pb.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**self._ctx.dataplane.server_metadata())

    async def ModelMetadata(self, request: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:
        meta = self._ctx.dataplane.model_metadata(request.name, request.version or None)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]],
        )

    async def ModelInfer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        result = await self._ctx.dataplane.infer(
            request.model_name, request.model_version or None, decode_request(request)
        )
        return encode_response(result)

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest
    ) -> pb.RepositoryIndexResponse:
        rows = self._ctx.repository.index(ready_only=request.ready)
        index = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[
                index(name=r.name, version=r.version, state=r.state, reason=r.reason) for r in rows
            ]
        )

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest
    ) -> pb.RepositoryModelLoadResponse:
        await self._ctx.repository.load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest
    ) -> pb.RepositoryModelUnloadResponse:
        await self._ctx.repository.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


_RPCS: dict[str, tuple[type, type]] = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
    "RepositoryIndex": (pb.RepositoryIndexRequest, pb.RepositoryIndexResponse),
    "RepositoryModelLoad": (pb.RepositoryModelLoadRequest, pb.RepositoryModelLoadResponse),
    "RepositoryModelUnload": (pb.RepositoryModelUnloadRequest, pb.RepositoryModelUnloadResponse),
}


def _with_status(
    ctx: ApiContext, method: Callable[[object], Awaitable[object]], message: type
) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[object]]:
    """Adapt ``method(request)`` to gRPC: parse the raw bytes as ``message`` (bytes that are
    not one are ``INVALID_ARGUMENT``, not grpc's own ``UNKNOWN``) and turn errors into status
    codes."""

    async def handler(raw: bytes, context: grpc.aio.ServicerContext) -> object:
        try:
            request = message.FromString(raw)
        except DecodeError:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {message.__name__}"
            )
        try:
            return await method(request)
        except BatonError as exc:
            model = getattr(request, "model_name", "") or getattr(request, "name", "")
            label = ctx.dataplane.metric_model(model)
            ctx.metrics.rejected.labels(label, str(exc.http_status)).inc()
            await context.abort(grpc.StatusCode[exc.grpc_code], str(exc))
        except Exception:
            detail = internal_error(log, f"unexpected error in {method.__name__}")
            await context.abort(grpc.StatusCode.INTERNAL, detail)

    return handler


async def start_grpc_server(
    ctx: ApiContext,
    host: str,
    port: int,
    *,
    interceptors: list[grpc.aio.ServerInterceptor] | None = None,
    credentials: grpc.ServerCredentials | None = None,
    reuse_port: bool = False,
) -> grpc.aio.Server:
    """Start serving on ``host:port`` (on the running loop), over TLS with ``credentials``;
    returns the server to stop later. With ``reuse_port`` (``SO_REUSEPORT``) the worker
    processes of one node serve the same port."""
    limit = ctx.settings.max_request_bytes
    server = grpc.aio.server(
        interceptors=interceptors or (),
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", int(reuse_port)),
        ],
    )
    servicer = InferenceServicer(ctx)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            _with_status(ctx, getattr(servicer, name), request),
            response_serializer=response.SerializeToString,
        )
        for name, (request, response) in _RPCS.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    address = f"{host}:{port}"
    bound = (
        server.add_secure_port(address, credentials)
        if credentials is not None
        else server.add_insecure_port(address)
    )
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {address}")
    await server.start()
    return server
