"""The supervisor's side of ``--workers N``: start, feed, flip and restart the workers.

A :class:`WorkerPool` keeps N worker processes (:mod:`baton.workers.worker`) and is the only
way the supervisor reaches them:

- **loading** (:meth:`load_everywhere`, from a :class:`~baton.workers.pooled.PooledRuntime`
  the manager's loader drives) goes to one worker after the other; one worker's failure fails
  the version for the node and unloads it from the workers that had it. A worker that dies
  meanwhile is skipped: it loads the version when it comes back.
- **switching** (:meth:`flip`, called by the manager every time it replaces its serving map)
  sends generation N+1 to every worker and waits until each has switched (a worker that does
  not answer within :data:`FLIP_TIMEOUT` is killed and restarted). So when the manager
  announces a version SERVING, every worker routes to it, and no worker still routes a
  retired version.
- **retiring** (:meth:`unload_everywhere`) drains and unloads in every worker, each on its own
  requests in flight.
- **supervising**: a worker that exits is restarted (backing off from 0.5 s up to 10 s); it
  loads every version the node holds and takes the current generation before it binds the
  ports, so no connection reaches a worker that is not ready. :meth:`ready` is true only while
  every worker is serving.

Two locks keep a joining worker from missing anything: ``_load_lock`` is held through a whole
load (into every member) and through a join, so a version is loaded either before a worker
joins or into it as a member; ``_members_lock`` orders generations against joins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from baton.errors import VersionFailed
from baton.observe.events import EventBus
from baton.serving.handle import VersionHandle
from baton.serving.serving_map import ServingMap
from baton.settings import ModelSettings, ServerSettings
from baton.tempdirs import owned_temp_dir, remove_stale
from baton.workers.channel import Channel, WorkerError, WorkerGone
from baton.workers.entry import run_worker
from baton.workers.generation import Generation, generation_of
from baton.workers.metrics import merge_metrics
from baton.workers.pooled import PooledRuntime
from baton.workers.windows import add_samples

if TYPE_CHECKING:
    from baton.artifacts.files import VersionFiles
    from baton.control.manager import Manager

__all__ = ["FLIP_TIMEOUT", "WorkerPool", "usable_cores"]

log = logging.getLogger("baton.workers")

FLIP_TIMEOUT = 10.0  # seconds a worker has to switch generations before it is restarted
START_TIMEOUT = 120.0  # seconds a new worker has to import, and to open its ports
MEMBER_WAIT = 120.0  # seconds a load waits for at least one running worker


PREFIX = "baton-workers-"  # + the supervisor's pid: its socket and the files it keeps


def usable_cores() -> int:
    """CPU cores this process may run on (``--workers auto``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(eq=False)
class WorkerLink:
    index: int
    process: multiprocessing.process.BaseProcess
    channel: Channel
    open: bool = False  # accepting connections
    started: float = field(default_factory=time.monotonic)


class WorkerPool:
    def __init__(self, settings: ServerSettings, count: int, events: EventBus) -> None:
        if count < 2:
            raise ValueError("a worker pool has at least two workers")
        self.count = count
        self.settings = settings
        remove_stale(PREFIX)  # what supervisors killed with -9 left
        self.directory = owned_temp_dir(PREFIX)
        self.socket_path = str(self.directory / "supervisor.sock")
        self.manager: Manager | None = None  # set by the server once the manager exists
        self.index_rows: Callable[[], tuple] = tuple  # the repository index, for workers
        self.on_repository: Callable[[str, str], asyncio.Future] | None = None
        self._events = events
        # Workers are forked from a server process that has imported them (numpy, ONNX Runtime,
        # the API) once: the pages those imports fill stay shared between the workers.
        self._mp = multiprocessing.get_context("forkserver")
        self._mp.set_forkserver_preload(["baton.workers.preload"])
        self._load_lock = threading.RLock()
        self._members_lock = threading.Lock()
        self._members_changed = threading.Condition(self._members_lock)
        self._members: list[WorkerLink] = []
        self._processes: set[multiprocessing.process.BaseProcess] = set()
        self._live: dict[int, PooledRuntime] = {}  # token → copy loaded in every member
        self._handles: dict[int, VersionHandle] = {}  # token → the manager's handle
        self._generation = Generation(0, ())
        self._told_ready: bool | None = None  # the node's readiness as last told to workers
        self._heard = False  # every worker has acknowledged _told_ready
        # set by the server: the node's readiness, apart from the workers having heard of it
        self.node_ready: Callable[[], bool] = lambda: False
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._readiness: asyncio.Task | None = None

    # ---- the manager's side -------------------------------------------------------------
    def runtime_factory(self, files: VersionFiles, settings: ModelSettings) -> PooledRuntime:
        """The loader's runtime factory: every version is a pooled one."""
        return PooledRuntime(self, files.path, settings, files.code_dirs)

    def load_everywhere(self, runtime: PooledRuntime) -> dict:
        """Load and warm ``runtime``'s version in every worker, one at a time; the first
        worker's facts with the memory of all. Raises :class:`VersionFailed`."""
        self._await_members()
        with self._load_lock:
            runtime.path = self._keep_files(runtime)
            self._live[runtime.token] = runtime
            done: list[WorkerLink] = []
            facts: dict | None = None
            memory = 0
            try:
                for link in self._snapshot():
                    try:
                        answer = link.channel.call("load", **self._load_args(runtime))
                    except WorkerGone:
                        continue  # it loads the version when it comes back
                    done.append(link)
                    facts = facts or answer
                    memory += answer["memory"]
                if facts is None:
                    raise VersionFailed("no_workers", "no worker process is running")
            except BaseException:
                self._live.pop(runtime.token, None)
                for link in done:
                    self._quietly(link.channel.submit("unload", token=runtime.token,
                                                      drain_timeout=0.0), 60)  # fmt: skip
                self._drop_files(runtime)
                raise
        return {**facts, "memory": memory}

    def predict(self, runtime: PooledRuntime, inputs: dict, outputs: list[str] | None) -> dict:
        """One prediction by the first worker that answers."""
        for link in self._snapshot():
            try:
                return link.channel.call("predict", token=runtime.token, inputs=inputs,
                                         outputs=outputs)  # fmt: skip
            except WorkerGone:
                continue
        raise WorkerError("no worker process is running")

    def unload_everywhere(self, runtime: PooledRuntime) -> tuple[float, bool, int]:
        """Drain and unload in every worker; (slowest drain, any forced, in flight when
        forced, summed)."""
        with self._load_lock:
            self._live.pop(runtime.token, None)
            members = self._snapshot()
        timeout = runtime.settings.drain_timeout
        futures = [link.channel.submit("unload", token=runtime.token, drain_timeout=timeout)
                   for link in members]  # fmt: skip
        reports = [r for f in futures if (r := self._quietly(f, timeout + 60)) is not None]
        self._drop_files(runtime)
        return (max((r[0] for r in reports), default=0.0), any(r[1] for r in reports),
                sum(r[2] for r in reports))  # fmt: skip

    def flip(self, serving_map: ServingMap) -> None:
        """Every worker routes as ``serving_map`` does when this returns (or is restarting).
        Called on the event loop each time the manager replaces its map."""
        manager = self.manager
        if manager is None:
            return
        with self._members_lock:
            generation = generation_of(self._generation.number + 1, serving_map,
                                       manager.models(), self.index_rows())  # fmt: skip
            self._generation = generation
            self._handles = {h.runtime.token: h for route in serving_map.models.values()  # type: ignore[attr-defined]
                             for h in route.versions.values()}  # fmt: skip
            calls = [(link, link.channel.submit("generation", generation=generation))
                     for link in self._members]  # fmt: skip
        deadline = time.monotonic() + FLIP_TIMEOUT
        for link, call in calls:
            try:
                call.result(max(0.0, deadline - time.monotonic()))
            except WorkerGone:
                pass
            except Exception as exc:
                log.error("worker %d did not switch to generation %d (%s); restarting it",
                          link.index, generation.number, exc or type(exc).__name__)  # fmt: skip
                link.process.kill()

    def ready(self) -> bool:
        """Every worker is serving (none is starting or restarting)."""
        return not self._closing and sum(1 for m in self._members if m.open) == self.count

    def workers_told_ready(self) -> bool:
        """Every worker has been told the node is ready (and said so): a worker answers gRPC
        ``ServerReady`` itself, so the node reports ready only once all of them would."""
        return self._told_ready is True and self._heard

    async def metrics_text(self, own: bytes) -> bytes:
        """The supervisor's metrics (``own``) and every worker's, added up."""
        texts = [own]
        for link in self._snapshot():
            try:
                texts.append(await asyncio.wait_for(
                    asyncio.wrap_future(link.channel.submit("metrics")), 5.0))  # fmt: skip
            except (WorkerError, TimeoutError):
                continue
        return merge_metrics(texts)

    # ---- lifecycle ----------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start every worker (each from its own keeper thread, which restarts it)."""
        self._loop = loop
        self._readiness = loop.create_task(self._tell_readiness())
        for index in range(self.count):
            thread = threading.Thread(target=self._keep, args=(index,),
                                      name=f"baton-keeper-{index}", daemon=True)  # fmt: skip
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Ask every worker to finish what is in flight and exit (blocking); kill any that
        take longer than the shutdown timeout."""
        self._closing = True
        if self._readiness is not None:
            self._loop.call_soon_threadsafe(self._readiness.cancel)  # type: ignore[union-attr]
        with self._members_changed:
            self._members_changed.notify_all()
        processes = list(self._processes)
        for process in processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + self.settings.shutdown_timeout + 10
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)
        for thread in self._threads:
            thread.join(5)
        shutil.rmtree(self.directory, ignore_errors=True)

    async def _tell_readiness(self) -> None:
        """Tell the workers when the node's readiness changes (checked every 0.25 s)."""
        while True:
            await asyncio.sleep(0.25)
            ready = self.node_ready()
            if ready != self._told_ready:
                self._told_ready, self._heard = ready, False
                calls = [link.channel.submit("ready", ready=ready) for link in self._snapshot()]
                for call in calls:  # a worker that is gone is told again when it comes back
                    with contextlib.suppress(WorkerError, TimeoutError):
                        await asyncio.wait_for(asyncio.wrap_future(call), FLIP_TIMEOUT)
                self._heard = True

    # ---- workers coming and going -------------------------------------------------------
    def _keep(self, index: int) -> None:
        backoff = 0.5
        while not self._closing:
            link = self._join(index)
            if link is not None:
                link.process.join()
                self._leave(link)
                if self._closing:
                    return
                lived = time.monotonic() - link.started
                code = link.process.exitcode
                self._publish(
                    "worker", state="exited", reason="worker_exited",
                    message=f"worker {index} (pid {link.process.pid}) exited with code {code}; "
                    "restarting it",
                    data={"worker": index, "exitcode": code},
                )  # fmt: skip
                if lived > 30:
                    backoff = 0.5
            time.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    def _join(self, index: int) -> WorkerLink | None:
        """Start worker ``index``, load what the node holds into it, give it the current
        generation, then let it open the ports. ``None`` if it could not start."""
        parent, child = self._mp.Pipe()
        process = self._mp.Process(
            target=run_worker, name=f"baton-worker-{index}",
            args=(child, self.settings, index, self.socket_path),
        )  # fmt: skip
        process.start()
        child.close()
        self._processes.add(process)
        link = WorkerLink(index, process, Channel(parent, f"worker {index}", self._on_call,
                                                  self._on_note))  # fmt: skip
        link.channel.start()
        try:
            link.channel.call("hello", timeout=START_TIMEOUT)
            with self._load_lock:
                for runtime in list(self._live.values()):
                    link.channel.call("load", **self._load_args(runtime))
                with self._members_lock:
                    link.channel.call("generation", timeout=FLIP_TIMEOUT,
                                      generation=self._generation)  # fmt: skip
                    link.channel.call("ready", timeout=FLIP_TIMEOUT, ready=bool(self._told_ready))
                    self._members.append(link)
            link.channel.call("open", timeout=START_TIMEOUT)
        except Exception as exc:
            if not self._closing:
                log.error("worker %d could not start: %s", index, exc)
            self._leave(link)
            process.kill()
            process.join()
            self._processes.discard(process)
            return None
        link.open = True
        with self._members_changed:
            self._members_changed.notify_all()
        self._publish("worker", state="serving", message=f"worker {index} serving",
                      data={"worker": index, "pid": process.pid})  # fmt: skip
        return link

    def _leave(self, link: WorkerLink) -> None:
        with self._members_lock:
            if link in self._members:
                self._members.remove(link)
        link.channel.close()
        self._processes.discard(link.process)

    def _snapshot(self) -> list[WorkerLink]:
        with self._members_lock:
            return list(self._members)

    def _await_members(self) -> None:
        with self._members_changed:
            self._members_changed.wait_for(lambda: self._members or self._closing, MEMBER_WAIT)

    # ---- what workers send --------------------------------------------------------------
    def _on_call(self, op: str, args: dict) -> Future:
        """A worker's gRPC service asks for a repository load or unload."""
        if op != "repository" or self._loop is None or self.on_repository is None:
            raise WorkerError(f"unknown call {op!r}")
        if args.get("action") not in ("load", "unload"):
            raise WorkerError(f"unknown repository action {args.get('action')!r}")
        coroutine = self.on_repository(args["action"], args["name"])
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)  # type: ignore[arg-type]

    def _on_note(self, op: str, args: dict) -> None:
        if self._loop is None:
            return
        if op == "stats":
            self._loop.call_soon_threadsafe(self._add_stats, args["batch"])
        elif op == "event":
            self._loop.call_soon_threadsafe(
                lambda: self._events.publish(args["kind"], args["model"], **args["fields"])
            )

    def _add_stats(self, batch: list) -> None:
        for token, served, samples in batch:
            handle = self._handles.get(token)
            if handle is None:
                continue
            handle.served += served
            if samples is not None and handle.window is not None:
                add_samples(handle.window, samples)

    def _publish(self, kind: str, **fields) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(lambda: self._events.publish(kind, "", **fields))

    # ---- files --------------------------------------------------------------------------
    @staticmethod
    def _load_args(runtime: PooledRuntime) -> dict:
        return {"token": runtime.token, "path": str(runtime.path), "settings": runtime.settings,
                "code_dirs": runtime.code_dirs}  # fmt: skip

    def _keep_files(self, runtime: PooledRuntime) -> Path:
        """Hard links to the version's (verified) files, kept until it is unloaded, so a
        worker that restarts loads the very bytes that were verified — and, being the same
        inodes, shares their page cache. The files themselves where linking is impossible."""
        target = self.directory / str(runtime.token)
        try:
            shutil.copytree(runtime.path, target, copy_function=os.link)
        except OSError:
            shutil.rmtree(target, ignore_errors=True)
            return runtime.path
        return target

    def _drop_files(self, runtime: PooledRuntime) -> None:
        if runtime.path.parent == self.directory:
            shutil.rmtree(runtime.path, ignore_errors=True)

    @staticmethod
    def _quietly(future: Future, timeout: float):
        try:
            return future.result(timeout)
        except Exception:
            return None
