"""Composition root: wire sources → manager → serving map → data plane → HTTP and gRPC.

::

    server = BatonServer(ServerSettings(repository=Path("models"), http_port=8000))
    await server.serve()        # until SIGTERM/SIGINT: stop accepting, finish in-flight, unload

Shutdown order: uvicorn stops accepting and waits (up to ``shutdown_timeout``) for requests in
flight; then gRPC does the same, sources stop, the manager drains and unloads every version,
and threads stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import grpc
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from baton.api.context import ApiContext
from baton.api.dataplane import DataPlane
from baton.api.grpc import start_grpc_server
from baton.api.http import admin, rest
from baton.api.http.fast_infer import FastInferPath
from baton.api.repository import Repository
from baton.artifacts.signing import TrustStore
from baton.artifacts.verify import Verifier
from baton.control.manager import Manager
from baton.errors import BatonError
from baton.loading.loader import RuntimeFactory
from baton.loading.memory import tune_gc_for_serving
from baton.loading.preflight import MemoryLimits
from baton.observe.audit import AuditLog
from baton.observe.events import Event, EventBus
from baton.observe.metrics import Metrics
from baton.rollout.controller import RolloutController, resume_from_audit
from baton.runtimes.compile_cache import CompileCache
from baton.runtimes.registry import runtime_for
from baton.settings import ServerSettings
from baton.sources.base import Source
from baton.sources.filesystem import FilesystemSource

__all__ = ["BatonServer"]

log = logging.getLogger("baton")


def _log_event(event: Event) -> None:
    if event.kind == "state":
        level = logging.WARNING if event.reason else logging.INFO
        log.log(
            level,
            "%s v%s → %s%s",
            event.model,
            event.version,
            event.state,
            f" ({event.reason}: {event.message})" if event.reason else "",
        )
    else:
        log.info(
            "%s %s%s%s",
            event.model,
            event.kind,
            f" v{event.version}" if event.version is not None else "",
            f" {event.message}" if event.message else "",
        )


def _runtime_factory(settings: ServerSettings) -> RuntimeFactory | None:
    """Runtimes with the compile cache, unless it is turned off (or there is nowhere to put it)."""
    directory = settings.compile_cache
    if directory is None and settings.repository is not None:
        directory = settings.repository / ".baton" / "compile-cache"
    if directory is None or settings.compile_cache_bytes == 0:
        return None
    cache = CompileCache(directory, settings.compile_cache_bytes)
    return lambda files, model_settings: runtime_for(files.path, model_settings, cache)


class BatonServer:
    def __init__(
        self,
        settings: ServerSettings,
        sources: list[Source] | None = None,
        runtime_factory: RuntimeFactory | None = None,
    ) -> None:
        self.settings = settings
        self.events = EventBus()
        self.metrics = Metrics()
        self.events.subscribe(self.metrics.on_event)
        self.events.subscribe(_log_event)
        self.audit = self._open_audit_log(settings)
        if self.audit is not None:
            self.events.subscribe(self.audit.on_event)
        threads = settings.infer_threads or os.cpu_count() or 2
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="baton-infer")
        runtime_factory = runtime_factory or _runtime_factory(settings)
        extra = {"runtime_factory": runtime_factory} if runtime_factory else {}
        self.manager = Manager(
            self.events,
            verifier=Verifier(
                TrustStore(settings.trusted_keys),
                settings.require_manifest,
                settings.require_signature,
            ),
            infer_executor=self.executor,
            memory=MemoryLimits(settings.memory_budget, settings.memory_headroom),
            batch_observer=self.metrics.observe_batch,
            **extra,
        )
        self.dataplane = DataPlane(
            self.manager, self.metrics, session_parameter=settings.session_parameter
        )
        self.rollouts = RolloutController(self.manager, settings.rollout_period)
        if sources is None:
            sources = []
            if settings.repository is not None:
                sources.append(
                    FilesystemSource(
                        settings.repository, settings.poll_interval, settings.poll_jitter
                    )
                )
        self.sources = sources
        self.repository = Repository(self.manager, sources)
        self.context = ApiContext(
            settings,
            self.dataplane,
            self.manager,
            self.metrics,
            self.events,
            self.repository,
            self.rollouts,
            self.audit.path if self.audit else None,
        )
        self._grpc: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task] = []
        self.app = FastInferPath(self._build_app(), self.context)

    @staticmethod
    def _open_audit_log(settings: ServerSettings) -> AuditLog | None:
        path = settings.audit_log
        if path is None and settings.repository is not None:
            path = settings.repository / ".baton" / "audit.jsonl"
        if path is None:
            return None
        try:
            return AuditLog(path, fsync=settings.audit_fsync)
        except OSError as exc:
            log.warning("no audit log: cannot write %s (%s)", path, exc)
            return None

    def _build_app(self) -> Starlette:
        app = Starlette(
            routes=[*rest.routes, *admin.routes],
            exception_handlers={
                BatonError: self._error_response,
                HTTPException: self._http_error_response,
                Exception: self._unexpected_error_response,
            },
            lifespan=self._lifespan,
        )
        app.state.baton = self.context
        return app

    async def _error_response(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BatonError)
        model = request.path_params.get("model", "")
        self.metrics.rejected.labels(model, str(exc.http_status)).inc()
        return rest.json_response({"error": str(exc)}, exc.http_status)

    async def _http_error_response(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return rest.json_response({"error": exc.detail}, exc.status_code)

    async def _unexpected_error_response(self, request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return rest.json_response({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette):
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def start(self) -> None:
        """Start the reconcile loop, the sources, the rollout controller and gRPC (HTTP is
        started by :meth:`serve`). Unfinished rollouts in the audit log are resumed."""
        if self.audit is not None:
            resume_from_audit(self.manager, self.audit.path)
        self.manager.start()
        if self.settings.grpc_port:
            self._grpc = await start_grpc_server(
                self.context, self.settings.host, self.settings.grpc_port
            )
            log.info("gRPC serving on %s:%d", self.settings.host, self.settings.grpc_port)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._tune_gc_once_synced()))
        self._tasks.append(loop.create_task(self.rollouts.run(), name="rollouts"))
        for source in self.sources:
            self._tasks.append(
                loop.create_task(source.run(self.manager.publish), name=f"source {source.name}")
            )

    async def _tune_gc_once_synced(self) -> None:
        await self.manager.wait_until(lambda: self.manager.synced, timeout=float("inf"))
        tune_gc_for_serving()

    async def stop(self) -> None:
        self.dataplane.shutting_down = True
        if self._grpc is not None:
            # stop accepting RPCs; those in flight get up to the shutdown timeout to finish
            await self._grpc.stop(grace=self.settings.shutdown_timeout)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.dataplane.shadow.drain()
        self.dataplane.shadow.shutdown()
        await self.manager.stop()
        self.executor.shutdown(wait=True)
        log.info("baton stopped")
        if self.audit is not None:
            self.audit.close()

    async def serve(self) -> None:
        """Serve HTTP until SIGTERM/SIGINT, then shut down gracefully."""
        config = uvicorn.Config(
            self.app,
            host=self.settings.host,
            port=self.settings.http_port,
            log_level=self.settings.log_level,
            access_log=self.settings.access_log,
            timeout_graceful_shutdown=self.settings.shutdown_timeout,
            lifespan="on",
        )
        await uvicorn.Server(config).serve()
