"""One worker process of a node: loads what the supervisor says, serves inference on the
shared ports, and mirrors the node's serving map generation by generation.

Started by :class:`baton.workers.pool.WorkerPool` (``multiprocessing``, spawn) with one end of
a pipe; everything it is told arrives as a call on that :class:`~baton.workers.channel.Channel`:

- ``load(token, path, settings, code_dirs)`` — create the runtime, load it, warm it up here;
  answers the runtime's signature, structure, platform and the memory the load added;
- ``generation(generation)`` — route as the node's generation N says (one assignment);
- ``ready(ready)`` — whether the whole node is ready (what gRPC ``ServerReady`` answers);
- ``predict(token, inputs, outputs)`` — one prediction (the supervisor's contract check,
  warm-up timing and golden set);
- ``unload(token, drain_timeout)`` — refuse new leases, wait for its requests in flight
  here (up to ``drain_timeout`` seconds), unload; answers (seconds, forced, in flight when forced);
- ``open()`` — bind the HTTP and gRPC ports (``SO_REUSEPORT``) and start serving; a worker
  accepts no connection before the supervisor has loaded the node's generation into it;
- ``metrics()`` — this worker's Prometheus text, for the supervisor to add up.

It sends notes back: ``stats`` (requests answered per loaded copy and a rollout's live
samples, every :data:`~baton.workers.windows.FLUSH_SECONDS`) and ``event`` (its own events).
It exits when its HTTP server stops (SIGTERM, SIGINT) or when the supervisor goes away.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import uvicorn

from baton.api.context import ApiContext
from baton.api.dataplane import DataPlane
from baton.api.grpc import start_grpc_server
from baton.api.grpc.auth import AuthInterceptor
from baton.api.http import rest
from baton.api.http.app import build_app
from baton.api.http.auth import AuthGate
from baton.api.security import security_from
from baton.api.sockets import bind_socket
from baton.errors import VersionFailed
from baton.loading.contract import apply_overrides
from baton.loading.loader import batcher_for
from baton.loading.memory import release_memory, resident_bytes
from baton.loading.warmup import run_warmup
from baton.observe.events import Event, EventBus
from baton.observe.metrics import Metrics
from baton.runtimes.base import Runtime
from baton.runtimes.factory import compile_cache_for
from baton.runtimes.registry import runtime_for
from baton.serving.handle import VersionHandle
from baton.settings import ModelSettings, ServerSettings
from baton.types import Signature
from baton.workers.channel import Channel
from baton.workers.forward import RemoteRepository, SupervisorProxy, supervisor_client
from baton.workers.generation import Generation
from baton.workers.replica import Replica
from baton.workers.windows import FLUSH_SECONDS, ForwardingWindow

__all__ = ["RUNTIME_MODULES", "worker_main"]

log = logging.getLogger("baton.workers")


#: What a worker imports only once it runs: the event loop, uvicorn's HTTP protocol, and the
#: transport and async backend of the client that forwards to the supervisor. The fork server
#: imports them before forking (``preload.py``), so their pages are shared. Some are private
#: modules of those libraries; one that a new version renames is skipped there (a worker then
#: imports what it needs itself), and ``tests/unit/workers/test_preload.py`` notices.
RUNTIME_MODULES = (
    "anyio._backends._asyncio",
    "certifi",
    "encodings.idna",
    "httpcore",
    "uvicorn.lifespan.off",
    "uvicorn.protocols.http.httptools_impl",
    "uvloop",
)


def worker_main(conn: Connection, settings: ServerSettings, index: int, socket_path: str) -> None:
    """The worker process's entry point."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s worker-{index} %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per forwarded request
    # uvicorn re-raises the signal that stopped it once it has drained; by then we are done
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(Worker(conn, settings, index, socket_path).run())
    except KeyboardInterrupt:
        pass


def _loop_factory():
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def is_local(path: str) -> bool:
    """Paths a worker answers itself: inference, metadata, liveness, model readiness."""
    return path.startswith("/v2") and not path.startswith(("/v2/repository", "/v2/health/ready"))


@dataclass(slots=True)
class _Loaded:
    runtime: Runtime
    signature: Signature
    settings: ModelSettings
    predict_seconds: float | None


class WorkerApp:
    """ASGI: local paths to the worker's own API (behind the access gate), the rest to the
    supervisor (which checks access itself)."""

    def __init__(self, local, proxy) -> None:
        self.local = local
        self.proxy = proxy

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        target = self.local if is_local(scope["path"]) else self.proxy
        await target(scope, receive, send)


class Worker:
    def __init__(
        self, conn: Connection, settings: ServerSettings, index: int, socket_path: str
    ) -> None:
        self.settings = settings
        self.index = index
        self.channel = Channel(conn, f"worker {index}", on_call=self._on_call)
        self.events = EventBus()
        self.metrics = Metrics()
        self.access, self.tls = security_from(settings)
        threads = settings.infer_threads or os.cpu_count() or 2
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="baton-infer")
        self.loads = ThreadPoolExecutor(
            settings.max_concurrent_loads, thread_name_prefix="baton-load"
        )
        self.cache = compile_cache_for(settings)
        self.replica = Replica()
        self.dataplane = DataPlane(self.replica, self.metrics,  # type: ignore[arg-type]
                                   session_parameter=settings.session_parameter,
                                   max_inflight=settings.max_inflight)  # fmt: skip
        self.client = supervisor_client(socket_path)
        self.context = ApiContext(settings, self.dataplane, self.replica,  # type: ignore[arg-type]
                                  self.metrics, self.events,
                                  RemoteRepository(self.channel, self.replica),  # type: ignore[arg-type]
                                  self.access)  # fmt: skip
        local_routes = [r for r in rest.routes if is_local(r.path)]
        local = AuthGate(build_app(self.context, None, local_routes), self.access, self.events)
        self.app = WorkerApp(local, SupervisorProxy(self.client, settings.max_request_bytes))
        self._loaded: dict[int, _Loaded] = {}
        self._handles: dict[int, VersionHandle] = {}
        self._reported: dict[int, int] = {}  # requests answered per copy, as last sent
        self._server: uvicorn.Server | None = None
        self._grpc = None

    # ---- the process --------------------------------------------------------------------
    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):  # until uvicorn takes them over
            self.loop.add_signal_handler(sig, self._done.set)
        self.events.subscribe(self._forward_event)
        self.channel.start()
        tasks = [
            self.loop.create_task(self._flush_stats()),
            self.loop.create_task(self._watch_supervisor()),
        ]
        await self._done.wait()
        if self._server is not None:
            self._server.should_exit = True
            await self._serving
        if self._grpc is not None:
            await self._grpc.stop(grace=self.settings.shutdown_timeout)
        for task in tasks:
            task.cancel()
        await self.client.aclose()
        self.executor.shutdown(wait=False)
        self.channel.close()

    async def _watch_supervisor(self) -> None:
        await asyncio.to_thread(self.channel.closed.wait)
        log.info("the supervisor went away; stopping")
        self._done.set()

    def _on_call(self, op: str, args: dict):
        """Runs on the channel's reader thread: hand the call to the event loop."""
        if op == "hello":
            return os.getpid()
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise ValueError(f"unknown call {op!r}")
        return asyncio.run_coroutine_threadsafe(handler(**args), self.loop)

    # ---- calls --------------------------------------------------------------------------
    async def _op_load(
        self, token: int, path: str, settings: ModelSettings, code_dirs: tuple[Path, ...] | None
    ) -> dict:
        return await self.loop.run_in_executor(
            self.loads, self._load, token, Path(path), settings, code_dirs
        )

    def _load(
        self, token: int, path: Path, settings: ModelSettings, code_dirs: tuple[Path, ...] | None
    ) -> dict:
        before = resident_bytes()
        runtime = runtime_for(path, settings, self.cache, code_dirs=code_dirs)
        try:
            runtime.load()
            raw = runtime.signature()
            try:
                signature = apply_overrides(raw, settings.inputs, settings.outputs)
            except ValueError as exc:
                raise VersionFailed("bad_config", str(exc)) from None
            warmup = run_warmup(runtime, signature, path, settings.warmup)
        except BaseException as exc:
            runtime.unload()
            release_memory()
            if isinstance(exc, Exception) and not isinstance(exc, VersionFailed):
                raise VersionFailed("load_error", f"{type(exc).__name__}: {exc}") from exc
            raise
        self._loaded[token] = _Loaded(runtime, signature, settings, warmup.predict_seconds)
        return {
            "signature": raw,
            "structure": runtime.structure(),
            "platform": runtime.platform,
            "computes_on_cpu": runtime.computes_on_cpu,
            "memory": max(0, resident_bytes() - before),
        }

    async def _op_ready(self, ready: bool) -> None:
        self.replica.node_ready = ready

    async def _op_generation(self, generation: Generation) -> int:
        self.replica.apply(generation, self._handle_for)
        for spec in generation.routes:
            for version, token in spec.versions.items():
                handle = self._handles.get(token)
                if handle is None:
                    continue
                if version not in spec.windowed:
                    handle.window = None
                elif not isinstance(handle.window, ForwardingWindow):
                    handle.window = ForwardingWindow()
        return generation.number

    def _handle_for(self, token: int, model: str, version: int) -> VersionHandle | None:
        handle = self._handles.get(token)
        if handle is None and (loaded := self._loaded.get(token)) is not None:
            batcher = batcher_for(model, version, loaded.runtime, loaded.signature,
                                  loaded.settings, self.executor, self.metrics.observe_batch,
                                  self.events.publish)  # fmt: skip
            handle = VersionHandle(model, version, loaded.runtime, loaded.signature,
                                   self.executor, batcher)  # fmt: skip
            handle.predict_seconds = loaded.predict_seconds
            self._handles[token] = handle
        return handle

    async def _op_predict(self, token: int, inputs: dict, outputs: list[str] | None) -> dict:
        runtime = self._loaded[token].runtime
        return await self.loop.run_in_executor(self.executor, runtime.predict, inputs, outputs)

    async def _op_unload(self, token: int, drain_timeout: float) -> tuple[float, bool, int]:
        started = time.perf_counter()
        handle = self._handles.pop(token, None)
        loaded = self._loaded.pop(token, None)
        self._reported.pop(token, None)
        forced, inflight = False, 0
        if handle is not None:
            handle.close()
            forced = not await handle.drained(drain_timeout)
            inflight = handle.inflight if forced else 0
        seconds = time.perf_counter() - started
        if loaded is not None:
            await self.loop.run_in_executor(self.loads, loaded.runtime.unload)
            await self.loop.run_in_executor(self.loads, release_memory)
        return seconds, forced, inflight

    async def _op_metrics(self) -> bytes:
        return self.metrics.render()

    async def _op_open(self) -> int:
        """Bind the shared ports and start serving; answers this process's id."""
        settings = self.settings
        sock = bind_socket(settings.host, settings.http_port, reuse_port=True)
        if settings.grpc_port:
            self._grpc = await start_grpc_server(
                self.context, settings.host, settings.grpc_port,
                interceptors=[AuthInterceptor(self.access, self.events)],
                credentials=self.tls.grpc_credentials() if self.tls else None,
                reuse_port=True,
            )  # fmt: skip
        config = uvicorn.Config(
            self.app, log_level=settings.log_level, access_log=settings.access_log,
            timeout_graceful_shutdown=settings.shutdown_timeout, lifespan="off", ws="none",
            **(self.tls.uvicorn_options() if self.tls else {}),
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._serving = self.loop.create_task(self._serve(sock))
        while not self._server.started:
            if self._serving.done():
                raise RuntimeError("the HTTP server did not start")
            await asyncio.sleep(0.02)
        return os.getpid()

    async def _serve(self, sock) -> None:
        assert self._server is not None
        try:
            await self._server.serve(sockets=[sock])
        finally:
            self._done.set()

    async def _op_stop(self) -> None:
        self._done.set()

    # ---- notes to the supervisor --------------------------------------------------------
    async def _flush_stats(self) -> None:
        """Every FLUSH_SECONDS: requests answered per copy since the last note, and the live
        samples of versions a rollout watches."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            batch = []
            for token, handle in self._handles.items():
                served = handle.served - self._reported.get(token, 0)
                window = handle.window
                samples = window.take() if isinstance(window, ForwardingWindow) else None
                if served or samples:
                    self._reported[token] = handle.served
                    batch.append((token, served, samples))
            if batch:
                self.channel.note("stats", batch=batch)

    def _forward_event(self, event: Event) -> None:
        self.channel.note("event", kind=event.kind, model=event.model,
                          fields={"version": event.version, "state": event.state,
                                  "reason": event.reason, "message": event.message,
                                  "data": {**event.data, "worker": self.index}})  # fmt: skip
