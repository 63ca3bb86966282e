"""Composition root: wire sources → manager → serving map → data plane → HTTP and gRPC.

::

    server = BatonServer(ServerSettings(repository=Path("models"), http_port=8000))
    await server.serve()        # until SIGTERM/SIGINT: stop accepting, finish in-flight, unload

Start-up fails with :class:`baton.errors.ConfigurationError` (one line saying what to change)
when the audit log is another server's or a port cannot be bound; nothing has been started then.
Shutdown order: uvicorn stops accepting and waits (up to ``shutdown_timeout``) for requests in
flight; then gRPC does the same, sources stop, the manager cancels loads under way and drains and
unloads every version, and threads stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import grpc
import uvicorn

from baton.api.context import ApiContext
from baton.api.dataplane import DataPlane
from baton.api.grpc import start_grpc_server
from baton.api.grpc.auth import AuthInterceptor
from baton.api.http.app import build_app
from baton.api.http.auth import AuthGate
from baton.api.http.live import LiveFeed
from baton.api.repository import Repository
from baton.api.security import security_from
from baton.api.sockets import bind_socket
from baton.artifacts.signing import TrustStore
from baton.artifacts.verify import Verifier, remove_stale_snapshots
from baton.control.manager import Manager
from baton.control.resume import resume_from_audit
from baton.errors import ConfigurationError
from baton.loading.loader import RuntimeFactory
from baton.loading.memory import available_memory, tune_gc_for_serving
from baton.loading.preflight import MemoryLimits
from baton.observe.audit import AuditLog, AuditLogInUse
from baton.observe.events import EventBus
from baton.observe.log import log_event
from baton.observe.metrics import Metrics
from baton.settings import ServerSettings
from baton.sources.base import Source
from baton.sources.filesystem import FilesystemSource
from baton.workers.pool import WorkerPool, usable_cores

if TYPE_CHECKING:
    from baton.fleet.node import FleetNode

__all__ = ["BatonServer", "bind_socket"]

log = logging.getLogger("baton")
#: How often idle sequences are ended and the live-sequence gauges updated (seconds).
SEQUENCE_SWEEP_SECONDS = 1.0
#: How often an open dashboard's fleet grid is read from etcd (seconds).
FLEET_GRID_SECONDS = 2.0


class BatonServer:
    def __init__(
        self,
        settings: ServerSettings,
        sources: list[Source] | None = None,
        runtime_factory: RuntimeFactory | None = None,
    ) -> None:
        self.settings = settings
        workers = settings.workers or usable_cores()
        if settings.fleet and workers > 1:  # fleet reports count this process's requests
            raise ConfigurationError("--fleet with --workers above 1 is not supported yet; "
                                     "run one process per node (--workers 1)")  # fmt: skip
        self.access, self.tls = security_from(settings)
        self._audit_failing = False
        self.audit = self._open_audit_log(settings)
        self.events = EventBus()
        self.metrics = Metrics()
        self.events.subscribe(self.metrics.on_event)
        self.events.subscribe(log_event)
        if self.audit is not None:
            self.events.subscribe(self.audit.on_event)
        threads = settings.infer_threads or os.cpu_count() or 2
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="baton-infer")
        self.pool = WorkerPool(settings, workers, self.events) if workers > 1 else None
        if self.pool is not None:  # runtimes live in the workers; the manager drives stand-ins
            runtime_factory = self.pool.runtime_factory
        elif runtime_factory is None:  # imported here: a supervisor never loads ONNX Runtime
            from baton.runtimes.factory import runtime_factory_for

            runtime_factory = runtime_factory_for(settings)
        extra = {"runtime_factory": runtime_factory} if runtime_factory else {}
        self.manager = Manager(
            self.events,
            verifier=Verifier(
                TrustStore(settings.trusted_keys),
                settings.require_manifest,
                settings.require_signature,
            ),
            infer_executor=self.executor,
            memory=MemoryLimits(settings.memory_budget, settings.memory_headroom, available_memory),
            batch_observer=self.metrics.observe_batch,
            max_concurrent_loads=settings.max_concurrent_loads,
            rollout_period=settings.rollout_period,
            on_map=self.pool.flip if self.pool is not None else None,
            **extra,
        )
        self.dataplane = DataPlane(
            self.manager,
            self.metrics,
            session_parameter=settings.session_parameter,
            max_inflight=settings.max_inflight,
        )
        if sources is None:
            sources = [self._repository_source(settings)] if settings.repository else []
        self.fleet = self._join_fleet(settings, sources) if settings.fleet else None
        if self.fleet is not None:
            sources = [self.fleet.source]
        self.sources = sources
        self.repository = Repository(self.manager, sources)
        self.context = ApiContext(
            settings,
            self.dataplane,
            self.manager,
            self.metrics,
            self.events,
            self.repository,
            self.access,
            self.audit.path if self.audit else None,
        )
        self._fleet_grid: dict | None = None  # nodes x models, refreshed while in a fleet
        self.live = self.context.live = LiveFeed(self.context, lambda: self._fleet_grid)
        if self.pool is not None:
            self._attach_pool(self.pool)
        self._grpc: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task] = []
        self.app = AuthGate(build_app(self.context, self._lifespan), self.access, self.events)

    def _attach_pool(self, pool: WorkerPool) -> None:
        """What the workers need from the supervisor: the manager, the repository index (for
        gRPC ``RepositoryIndex``), repository loads asked over gRPC, readiness and metrics."""
        pool.manager = self.manager
        pool.index_rows = lambda: tuple(
            (e.name, e.version, e.state, e.reason) for e in self.repository.index()
        )
        pool.on_repository = lambda action, name: getattr(self.repository, action)(name)
        self.dataplane.ready_checks += [pool.ready, pool.workers_told_ready]
        pool.node_ready = lambda: self.dataplane.ready(ignoring=pool.workers_told_ready)
        self.context.metrics_text = lambda: pool.metrics_text(self.metrics.render())

    def _join_fleet(self, settings: ServerSettings, sources: list[Source]) -> FleetNode:
        """This server as a node of the fleet in ``settings.fleet`` (its repository wrapped in
        a fleet source). Needs the ``fleet`` extra."""
        if len(sources) != 1:
            raise ConfigurationError("a fleet node needs exactly one repository (--repository)")
        try:
            from baton.fleet.node import FleetNode
        except ImportError as exc:
            raise ConfigurationError(
                f"--fleet needs the fleet extra: pip install 'baton[fleet]' ({exc})"
            ) from None
        try:
            return FleetNode(settings, sources[0], self.manager, self.metrics, self.dataplane)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None

    @staticmethod
    def _repository_source(settings: ServerSettings) -> Source:
        if settings.remote:
            from baton.sources.s3 import S3Source

            try:
                return S3Source(str(settings.repository), settings.local_cache,
                                settings.s3_interval, settings.s3_endpoint)  # fmt: skip
            except (ValueError, RuntimeError) as exc:
                raise ConfigurationError(str(exc)) from None
        return FilesystemSource(settings.repository, settings.poll_interval, settings.poll_jitter)

    def _audit_failed(self, exc: OSError) -> None:
        """A write to the audit log failed: count it; report the first of a run as an event."""
        self.metrics.audit_errors.inc()
        if not self._audit_failing:
            self._audit_failing = True
            self._soon("audit", state="failing", reason="write_error",
                       message=f"cannot write the audit log: {exc.strerror or exc}")  # fmt: skip

    def _soon(self, kind: str, **fields) -> None:
        """Publish an event once the current one has reached every subscriber (the audit log
        reports its own trouble from inside a delivery)."""
        if kind == "audit" and fields.get("state") == "recovered":
            self._audit_failing = False
        try:
            asyncio.get_running_loop().call_soon(lambda: self.events.publish(kind, "", **fields))
        except RuntimeError:
            self.events.publish(kind, "", **fields)

    def _open_audit_log(self, settings: ServerSettings) -> AuditLog | None:
        path = settings.audit_log
        if path is None and settings.state_dir is not None:
            path = settings.state_dir / "audit.jsonl"
        if path is None:
            return None
        try:
            return AuditLog(
                path, fsync=settings.audit_fsync, on_error=self._audit_failed,
                on_recover=lambda: self._soon("audit", state="recovered"),
            )  # fmt: skip
        except AuditLogInUse as exc:
            raise ConfigurationError(
                f"{exc}; stop it, or give this server its own log with BATON_AUDIT_LOG"
            ) from None
        except OSError as exc:
            log.warning("no audit log: cannot write %s (%s)", path, exc)
            return None

    @asynccontextmanager
    async def _lifespan(self, app):
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def start_grpc(self) -> None:
        """Bind and start gRPC (unless ``grpc_port`` is 0); :class:`ConfigurationError` if the
        port cannot be bound."""
        if not self.settings.grpc_port:
            return
        host, port = self.settings.host, self.settings.grpc_port
        flag = "--grpc-port (0 turns gRPC off)"
        bind_socket(host, port, "gRPC port", flag).close()  # a clear error before gRPC's own
        try:
            self._grpc = await start_grpc_server(
                self.context, host, port,
                interceptors=[AuthInterceptor(self.access, self.events)],
                credentials=self.tls.grpc_credentials() if self.tls else None,
            )  # fmt: skip
        except RuntimeError as exc:
            raise ConfigurationError(
                f"gRPC port {port} on {host} is not available ({exc}); choose another with {flag}"
            ) from None
        log.info("gRPC%s serving on %s:%d", " (TLS)" if self.tls else "", host, port)

    async def start(self) -> None:
        """Start the reconcile loop, the sources and the GC tuning (gRPC and HTTP are started
        by :meth:`serve`). Unfinished rollouts in the audit log are resumed."""
        removed = await asyncio.to_thread(remove_stale_snapshots)
        if removed:
            log.info("removed %d verified copies left by servers that died", removed)
        if self.audit is not None:
            await asyncio.to_thread(resume_from_audit, self.manager, self.audit.path)
        loop = asyncio.get_running_loop()
        if self.pool is not None:
            self.pool.start(loop)
        self.manager.start()
        self._tasks.append(loop.create_task(self._tune_gc_once_synced()))
        self._tasks.append(loop.create_task(self._sweep_sequences(), name="sequences"))
        self.live.start()
        if self.fleet is not None:
            self._tasks.extend(self.fleet.start(loop))
            self._tasks.append(loop.create_task(self._watch_fleet_grid(), name="fleet grid"))
        for source in self.sources:
            self._tasks.append(
                loop.create_task(source.run(self.manager.publish), name=f"source {source.name}")
            )

    async def _sweep_sequences(self) -> None:
        """Once a second: end idle sequences and update the live-sequence gauges."""
        while True:
            await asyncio.sleep(SEQUENCE_SWEEP_SECONDS)
            self.metrics.observe_sequences(self.manager.sequences.sweep())

    async def _watch_fleet_grid(self) -> None:
        """Every few seconds, while dashboards are open: the fleet's nodes x models (from etcd,
        off the loop); an unreachable store keeps the last grid, marked as stale."""
        assert self.fleet is not None
        from baton.fleet.operations import fleet_state  # the fleet extra: only in a fleet
        from baton.fleet.verdict import grid

        while True:
            await asyncio.sleep(FLEET_GRID_SECONDS)
            if not self.live.clients:
                continue
            try:
                state = await asyncio.to_thread(fleet_state, self.fleet.store)
            except Exception as exc:  # etcd unreachable: unknown, not empty
                if self._fleet_grid is not None:
                    self._fleet_grid = self._fleet_grid | {"stale": str(exc)}
                continue
            self._fleet_grid = grid(state.verdict, state.leader, state.rollouts)

    async def _tune_gc_once_synced(self) -> None:
        await self.manager.wait_until(lambda: self.manager.synced, timeout=float("inf"))
        tune_gc_for_serving()

    async def stop(self) -> None:
        self.dataplane.shutting_down = True
        await self.live.close()
        if self._grpc is not None:
            # stop accepting RPCs; those in flight get up to the shutdown timeout to finish
            await self._grpc.stop(grace=self.settings.shutdown_timeout)
        if self.pool is not None:  # workers finish what is in flight, then exit
            await asyncio.to_thread(self.pool.stop)
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
        """Bind HTTP and gRPC, then serve until SIGTERM/SIGINT and shut down gracefully.
        Raises :class:`ConfigurationError` (before anything has started) if a port is taken."""
        if self.pool is not None:
            return await self._serve_with_workers(self.pool)
        sock = bind_socket(self.settings.host, self.settings.http_port)
        try:
            await self.start_grpc()
        except ConfigurationError:
            sock.close()
            if self.audit is not None:
                self.audit.close()
            raise
        if (warning := self.access.warning()) is not None:
            log.warning("%s; give --tokens to require them", warning)
        config = uvicorn.Config(
            self.app,
            host=self.settings.host,
            port=self.settings.http_port,
            log_level=self.settings.log_level,
            access_log=self.settings.access_log,
            timeout_graceful_shutdown=self.settings.shutdown_timeout,
            lifespan="on",
            ws="none",  # no WebSocket routes: nothing to import for them
            **(self.tls.uvicorn_options() if self.tls else {}),
        )
        await _HttpServer(config, self.live).serve(sockets=[sock])

    async def _serve_with_workers(self, pool: WorkerPool) -> None:
        """The supervisor: the workers serve the ports; this process answers them (admin API,
        readiness, metrics) on a private Unix socket."""
        settings = self.settings
        try:  # a clear error before any worker starts
            if settings.http_port == 0:
                raise ConfigurationError("--workers needs a fixed --http-port (0 would give "
                                         "each worker a port of its own)")  # fmt: skip
            bind_socket(settings.host, settings.http_port).close()
            if settings.grpc_port:
                bind_socket(settings.host, settings.grpc_port, "gRPC port",
                            "--grpc-port (0 turns gRPC off)").close()  # fmt: skip
        except ConfigurationError:
            if self.audit is not None:
                self.audit.close()
            raise
        if (warning := self.access.warning()) is not None:
            log.warning("%s; give --tokens to require them", warning)
        log.info("serving with %d worker processes on %s:%d (gRPC %s)", pool.count,
                 settings.host, settings.http_port, settings.grpc_port or "off")  # fmt: skip
        config = uvicorn.Config(
            self.app, uds=pool.socket_path, log_level=settings.log_level,
            access_log=settings.access_log, timeout_graceful_shutdown=settings.shutdown_timeout,
            lifespan="on", ws="none",
        )  # fmt: skip
        await _HttpServer(config, self.live).serve()


class _HttpServer(uvicorn.Server):
    """uvicorn, ending the dashboards' endless streams as soon as shutdown begins (uvicorn
    waits for open connections before the application's own shutdown runs)."""

    def __init__(self, config: uvicorn.Config, live: LiveFeed) -> None:
        super().__init__(config)
        self._live = live

    async def shutdown(self, sockets=None) -> None:
        await self._live.close()
        await super().shutdown(sockets)
