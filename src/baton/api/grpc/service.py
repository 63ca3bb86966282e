"""The gRPC service: each RPC translates to the shared DataPlane / Repository and back.

Served by a synchronous ``grpc.server``: each call runs on a worker thread of the server's
pool (:mod:`baton.api.grpc.pool`; grpc.aio cost more CPU per call, see BENCHMARKS.md). A plain
``ModelInfer`` is parsed, routed, leased, predicted and encoded on that thread
(:mod:`baton.api.grpc.threaded`); every other call runs on the event loop, as the HTTP API's
handlers do. ``ModelStreamInfer`` (Triton's streaming extension, used for sequences) answers a
stream's requests one after another, in order, on the stream's thread; a request that fails is
answered with an ``error_message`` and the stream goes on. Both protocols share the serving
map, the handles and their drain, so a swap behaves identically on both. Errors become gRPC
status codes taken from the error class (:mod:`baton.errors`); unexpected failures are
``INTERNAL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence

import grpc
from google.protobuf.message import DecodeError

from baton.api.context import ApiContext
from baton.api.grpc import inference_pb2 as pb
from baton.api.grpc.codec import decode_request, encode_response
from baton.api.grpc.pool import CallPool
from baton.api.grpc.threaded import ThreadedInfer, wait_on_loop
from baton.api.internal import internal_error
from baton.errors import BatonError, InvalidRequest

__all__ = ["GrpcServer", "InferenceServicer", "start_grpc_server"]

log = logging.getLogger("baton.grpc")
SERVICE = "inference.GRPCInferenceService"
#: gRPC worker threads running at once, besides those waiting for a batch, a load or a slow
#: model (see :mod:`baton.api.grpc.pool`; one per core measured best, 2x cores close), and the
#: most threads in all.
GRPC_THREADS = max(2, os.cpu_count() or 2)
GRPC_THREAD_LIMIT = 256
#: ModelStreamInfer streams open at once (each holds a thread while it is open); more are
#: refused with RESOURCE_EXHAUSTED, so streams never take every thread from unary calls.
MAX_STREAMS = GRPC_THREAD_LIMIT // 2


class InferenceServicer:
    """The RPCs. ``ModelInfer`` runs on the calling worker thread; the others are coroutines,
    run on the event loop."""

    def __init__(self, ctx: ApiContext, infer: ThreadedInfer) -> None:
        self._ctx = ctx
        self._infer = infer

    def ModelInfer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        result = self._infer.infer(
            request.model_name, request.model_version or None, decode_request(request)
        )
        return encode_response(result)

    def ModelStreamInfer(
        self, requests: Iterator[bytes], blocking: Callable
    ) -> Iterator[pb.ModelStreamInferResponse]:
        """Answer each request of the stream (raw bytes) in order; reading the next one waits
        inside ``blocking()`` (a stream may stay open and quiet for long)."""
        while True:
            with blocking():
                raw = next(requests, None)
            if raw is None:
                return
            try:
                try:
                    request = pb.ModelInferRequest.FromString(raw)
                except DecodeError:
                    raise InvalidRequest("the request is not a valid ModelInferRequest") from None
                response = self.ModelInfer(request)
            except BatonError as exc:
                yield pb.ModelStreamInferResponse(error_message=str(exc))
            except Exception:
                message = internal_error(log, "unexpected error in ModelStreamInfer")
                yield pb.ModelStreamInferResponse(error_message=message)
            else:
                yield pb.ModelStreamInferResponse(infer_response=response)

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
    ctx: ApiContext,
    pool: CallPool,
    loop: asyncio.AbstractEventLoop,
    method: Callable[[object], object],
    message: type,
) -> Callable[[bytes, grpc.ServicerContext], object]:
    """Adapt ``method(request)`` (a coroutine function runs on ``loop``) to a gRPC handler on
    a thread of ``pool``: parse the raw bytes as ``message`` (bytes that are not one are
    ``INVALID_ARGUMENT``, not grpc's own ``UNKNOWN``) and turn errors into status codes."""
    on_loop = inspect.iscoroutinefunction(method)

    def reject(model: str, status: int) -> None:  # on the loop: it reads the model records
        ctx.metrics.rejected.labels(ctx.dataplane.metric_model(model), str(status)).inc()

    def handler(raw: bytes, context: grpc.ServicerContext) -> object:
        try:
            request = message.FromString(raw)
        except DecodeError:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a valid {message.__name__}"
            )
        try:
            if on_loop:
                return wait_on_loop(loop, method(request), pool.blocking)
            return method(request)
        except BatonError as exc:
            model = getattr(request, "model_name", "") or getattr(request, "name", "")
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(reject, model, exc.http_status)
            code, details = grpc.StatusCode[exc.grpc_code], str(exc)
        except Exception:
            code = grpc.StatusCode.INTERNAL
            details = internal_error(log, f"unexpected error in {method.__name__}")
        context.abort(code, details)

    return handler


class GrpcServer:
    """A started gRPC server and its worker threads."""

    def __init__(self, server: grpc.Server, pool: CallPool) -> None:
        self._server = server
        self._pool = pool

    async def stop(self, grace: float | None) -> None:
        """Stop taking calls; those in flight get ``grace`` seconds to finish (``None``: none)
        before they are cancelled. Returns once every call has ended."""
        stopped = self._server.stop(grace)
        await asyncio.to_thread(stopped.wait)
        # a cancelled call's thread may still be predicting (or waiting for the loop)
        await asyncio.to_thread(self._pool.shutdown, True)


async def start_grpc_server(
    ctx: ApiContext,
    host: str,
    port: int,
    *,
    interceptors: Sequence[grpc.ServerInterceptor] | None = None,
    credentials: grpc.ServerCredentials | None = None,
    reuse_port: bool = False,
) -> GrpcServer:
    """Start serving on ``host:port`` for the running loop's data plane, over TLS with
    ``credentials``; returns the server to stop later. With ``reuse_port`` (``SO_REUSEPORT``)
    the worker processes of one node serve one port; without it, a port another process
    listens on cannot be bound (grpc's own default would share it)."""
    loop = asyncio.get_running_loop()
    settings = ctx.settings
    threads = settings.infer_threads or os.cpu_count() or 2  # as the HTTP path's pool
    pool = CallPool(GRPC_THREADS, GRPC_THREAD_LIMIT)
    infer = ThreadedInfer(ctx.dataplane, ctx.manager, ctx.metrics, loop, threads, pool.blocking)
    server = grpc.server(
        pool,
        interceptors=interceptors or (),
        options=[
            ("grpc.max_receive_message_length", settings.max_request_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", int(reuse_port)),
        ],
        maximum_concurrent_rpcs=settings.max_inflight or None,
    )
    servicer = InferenceServicer(ctx, infer)
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            _with_status(ctx, pool, loop, getattr(servicer, name), request),
            response_serializer=response.SerializeToString,
        )
        for name, (request, response) in _RPCS.items()
    }
    streams = threading.BoundedSemaphore(MAX_STREAMS)

    def stream(requests: Iterator[bytes], context: grpc.ServicerContext):
        if not streams.acquire(blocking=False):
            busy = f"{MAX_STREAMS} streams are open, the most this server takes"
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, busy)
        try:
            yield from servicer.ModelStreamInfer(requests, pool.blocking)
        finally:
            streams.release()

    handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
        stream, response_serializer=pb.ModelStreamInferResponse.SerializeToString
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    address = f"{host}:{port}"
    bound = (  # grpc raises RuntimeError for an address it cannot bind
        server.add_secure_port(address, credentials)
        if credentials is not None
        else server.add_insecure_port(address)
    )
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {address}")
    server.start()
    return GrpcServer(server, pool)
