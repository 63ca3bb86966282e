"""The reconcile loop: from what sources offer to what the serving map routes.

One :class:`Manager` per server. Sources publish full offers (:meth:`Manager.publish`); each
:meth:`Manager.tick` applies pending offers and admin overrides, asks
:func:`baton.policy.next_action` for one step and performs it: load (verify → load → contract
check → warm-up → golden set → READY), serve (make routable), or retire (stop routing, drain in the
background, unload). Every state change goes through :func:`baton.lifecycle.check_transition`
and is published on the event bus, in race-free order: SERVING after the version is
routable, DRAINING before it stops being.

Tests step it deterministically::

    manager.publish("test", {"m": spec})
    while await manager.tick():
        pass
    await manager.wait_drained()

The request path never calls the manager: it reads :attr:`Manager.serving_map`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor

from baton import policy
from baton.artifacts.verify import verify_version
from baton.batching import Batcher
from baton.contract import apply_overrides, batching_obstacle, incompatibilities
from baton.errors import Conflict, NotFound, VersionFailed
from baton.events import EventBus
from baton.golden import run_golden
from baton.handle import VersionHandle
from baton.lifecycle import VersionState, check_transition
from baton.memory import release_memory
from baton.records import ModelRecord, VersionRecord
from baton.runtimes.base import Runtime
from baton.runtimes.registry import runtime_for
from baton.serving_map import ModelRoute, ServingMap
from baton.settings import ModelSettings
from baton.sources.base import ModelSpec, VersionFiles
from baton.types import Signature
from baton.warmup import run_warmup

__all__ = ["Manager"]

log = logging.getLogger("baton.manager")
S = VersionState
RuntimeFactory = Callable[[VersionFiles, ModelSettings], Runtime]
HISTORY = 100  # default versions remembered per model, for rollback


def _default_factory(files: VersionFiles, settings: ModelSettings) -> Runtime:
    return runtime_for(files.path, settings)


class Manager:
    def __init__(
        self,
        events: EventBus,
        *,
        runtime_factory: RuntimeFactory = _default_factory,
        verifier: Callable[[VersionFiles], None] = verify_version,
        infer_executor: Executor | None = None,
        batch_observer: Callable[[str, int, int], None] | None = None,
    ) -> None:
        self.events = events
        self.serving_map: ServingMap = ServingMap.empty()
        self._models: dict[str, ModelRecord] = {}
        self._offers: dict[str, Mapping[str, ModelSpec]] = {}
        self._dirty = False
        self._wake = asyncio.Event()
        self._factory = runtime_factory
        self._verify = verifier
        self._infer_executor = infer_executor
        self._batch_observer = batch_observer
        self._load_executor = ThreadPoolExecutor(1, thread_name_prefix="baton-load")
        self._drains: set[asyncio.Task] = set()
        self._synced = asyncio.Event()
        self._changed = asyncio.Event()
        self._loop_task: asyncio.Task | None = None

    # ---- inputs -------------------------------------------------------------------------
    def publish(self, source: str, specs: Mapping[str, ModelSpec]) -> None:
        """Take a source's complete offer; applied on the next tick."""
        self._offers[source] = dict(specs)
        self._dirty = True
        self._wake.set()

    def models(self) -> dict[str, ModelRecord]:
        return dict(self._models)

    def model(self, name: str) -> ModelRecord:
        record = self._models.get(name)
        if record is None:
            raise NotFound(f"unknown model '{name}'")
        return record

    # ---- admin overrides ----------------------------------------------------------------
    def pin(self, name: str, version: int) -> None:
        """Serve exactly ``version`` (loading it if needed) until :meth:`unpin`."""
        record = self.model(name)
        if version not in record.available:
            raise NotFound(f"model '{name}' has no complete version {version} in its source")
        record.pinned = version
        self.events.publish("pin", name, version=version)
        self._wake.set()

    def unpin(self, name: str) -> None:
        record = self.model(name)
        record.pinned = None
        self.events.publish("unpin", name)
        self._wake.set()

    def rollback(self, name: str) -> int:
        """Pin the version that was the default before the current one; returns it."""
        record = self.model(name)
        current = record.default_version()
        earlier = [v for v in reversed(record.history) if v != current and v in record.available]
        if not earlier:
            older = [v for v in record.available if current is None or v < current]
            if not older:
                raise Conflict(f"model '{name}' has no earlier version to roll back to")
            earlier = [max(older)]
        target = earlier[0]
        self.pin(name, target)
        self.events.publish("rollback", name, version=target, data={"from": current})
        return target

    def set_label(self, name: str, label: str, version: int) -> None:
        record = self.model(name)
        if label.isdigit() or not label:
            raise Conflict("a label must be a non-numeric name")
        if version not in record.available:
            raise NotFound(f"model '{name}' has no complete version {version}")
        record.labels[label] = version
        self.events.publish("label", name, version=version, data={"label": label})
        self._rebuild_map()
        self._wake.set()

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Admin load/unload of a whole model (the repository extension)."""
        record = self.model(name)
        record.disabled = not enabled
        self.events.publish("enable" if enabled else "disable", name)
        self._wake.set()

    # ---- the loop -----------------------------------------------------------------------
    async def tick(self) -> policy.Action | None:
        """Apply pending offers, then perform at most one action; returns it (or ``None``)."""
        if self._dirty:
            self._apply_offers()
        views = [
            policy.ModelView(
                m.name,
                m.aspired(),
                {
                    v: policy.VersionView(r.state, r.files.fingerprint)
                    for v, r in m.versions.items()
                    if r.state is not None
                },
            )
            for m in self._models.values()
        ]
        action = policy.next_action(views)
        if isinstance(action, policy.Load):
            await self._load(self._models[action.model], action.version)
        elif isinstance(action, policy.Serve):
            self._serve(self._models[action.model], action.version)
        elif isinstance(action, policy.Retire):
            self._retire(self._models[action.model], action.version)
        return action

    async def run(self) -> None:
        """Reconcile forever: tick until idle, then sleep until something changes."""
        while True:
            self._wake.clear()
            while await self.tick():
                pass
            if self._offers and not self._synced.is_set():
                self._synced.set()
                self._notify()
            await self._wake.wait()

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self.run(), name="baton-manager")

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds, re-checking after every state change."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._changed.wait()
            return True
        except TimeoutError:
            return False

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_drained(self) -> None:
        """Wait for every background drain/unload to finish."""
        while self._drains:
            await asyncio.gather(*list(self._drains), return_exceptions=True)

    async def stop(self) -> None:
        """Stop reconciling; drain and unload every loaded version."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for m in self._models.values():
            m.offered = False
            for v, r in sorted(m.versions.items()):
                if r.state in (S.READY, S.SERVING):
                    self._retire(m, v)
        await self.wait_drained()
        self._load_executor.shutdown(wait=True)

    # ---- actions ------------------------------------------------------------------------
    def _apply_offers(self) -> None:
        self._dirty = False
        merged: dict[str, ModelSpec] = {}
        for specs in self._offers.values():
            merged.update(specs)
        for name, spec in merged.items():
            record = self._models.setdefault(name, ModelRecord(name))
            if spec.config_error != record.config_error and spec.config_error:
                self.events.publish(
                    "config_error", name, reason="bad_config", message=spec.config_error
                )
            record.settings, record.available = spec.settings, dict(spec.versions)
            record.config_error, record.offered = spec.config_error, True
            # A record keeps the fingerprint it was loaded from: for FAILED/UNLOADED versions the
            # policy compares it with the offer to decide on a retry; loaded ones are immutable.
            for v, r in record.versions.items():
                files = record.available.get(v)
                changed = files is not None and files.fingerprint != r.files.fingerprint
                if changed and r.state in (S.READY, S.SERVING):
                    self.events.publish(
                        "ignored_change",
                        name,
                        version=v,
                        message="files of a loaded version changed; versions are immutable, "
                        "publish a new version number instead",
                    )
            # Forget unloaded versions whose files are gone: they cannot come back, and a model
            # that goes through thousands of versions must not keep a record of each.
            for v in [
                v
                for v, r in record.versions.items()
                if r.state is S.UNLOADED and v not in record.available
            ]:
                del record.versions[v]
        for name, record in list(self._models.items()):
            if name not in merged:
                record.offered = False
                if all(r.state in (S.UNLOADED, S.FAILED, None) for r in record.versions.values()):
                    del self._models[name]
        self._rebuild_map()
        self._notify()

    def _set_state(
        self,
        m: ModelRecord,
        r: VersionRecord,
        state: VersionState,
        reason: str | None = None,
        message: str | None = None,
        **data,
    ) -> None:
        """The only place a version changes state. Race-free order: a version becoming SERVING
        is routable before the event goes out; one leaving SERVING is announced first."""
        check_transition(r.state, state)
        was_serving = r.state is S.SERVING
        r.state, r.since = state, time.time()
        if state is S.FAILED:
            r.reason, r.message = reason, message
        elif state is S.DISCOVERED:
            r.reason = r.message = None
        if state is S.SERVING:
            self._rebuild_map()
        self.events.publish(
            "state",
            m.name,
            version=r.version,
            state=state.value,
            reason=reason,
            message=message,
            data=data,
        )
        if was_serving:
            self._rebuild_map()
        self._notify()

    async def _load(self, m: ModelRecord, version: int) -> None:
        files = m.available[version]
        r = m.versions.get(version)
        if r is None:
            r = m.versions[version] = VersionRecord(version, files)
        r.files = files
        self._set_state(m, r, S.DISCOVERED, path=str(files.path))
        loop = asyncio.get_running_loop()
        runtime: Runtime | None = None
        try:
            self._set_state(m, r, S.VERIFYING)
            await loop.run_in_executor(self._load_executor, self._verify, files)
            self._set_state(m, r, S.LOADING)
            started = time.perf_counter()
            runtime = self._factory(files, m.settings)
            await loop.run_in_executor(self._load_executor, runtime.load)
            load_seconds = time.perf_counter() - started
            try:
                signature = apply_overrides(
                    runtime.signature(), m.settings.inputs, m.settings.outputs
                )
            except ValueError as exc:
                raise VersionFailed("bad_config", str(exc)) from None
            self._check_contract(m, signature)
            self._set_state(m, r, S.WARMING, load_seconds=load_seconds)
            started = time.perf_counter()
            await loop.run_in_executor(
                self._load_executor, run_warmup, runtime, signature, files.path, m.settings.warmup
            )
            await loop.run_in_executor(
                self._load_executor, run_golden, runtime, files.path, m.settings.golden
            )
            r.signature, r.platform = signature, runtime.platform
            r.handle = VersionHandle(
                m.name, version, runtime, signature, self._infer_executor,
                self._batcher(m, version, runtime, signature),
            )  # fmt: skip
            self._set_state(m, r, S.READY, warmup_seconds=time.perf_counter() - started)
        except Exception as exc:
            failure = (
                exc
                if isinstance(exc, VersionFailed)
                else VersionFailed("load_error", f"{type(exc).__name__}: {exc}")
            )
            if runtime is not None:
                await loop.run_in_executor(self._load_executor, runtime.unload)
            r.handle = None
            log.warning("%s version %d FAILED (%s): %s", m.name, version, failure.reason, failure)
            self._set_state(m, r, S.FAILED, failure.reason, str(failure))

    def _batcher(
        self, m: ModelRecord, version: int, runtime: Runtime, signature: Signature
    ) -> Batcher | None:
        cfg = m.settings
        if cfg.max_batch_size <= 1:
            return None
        obstacle = batching_obstacle(signature)
        if obstacle is not None:
            self.events.publish("batching_disabled", m.name, version=version, message=obstacle)
            return None
        observer = self._batch_observer
        return Batcher(
            runtime.predict,
            self._infer_executor,
            max_batch_size=cfg.max_batch_size,
            max_delay=cfg.max_queue_delay_ms / 1000,
            preferred_batch_sizes=cfg.preferred_batch_sizes,
            on_batch=(lambda rows: observer(m.name, version, rows)) if observer else None,
        )

    def _check_contract(self, m: ModelRecord, signature: Signature) -> None:
        current = m.default_version()
        if current is None or m.settings.allow_breaking_change:
            return
        old = m.versions[current].signature
        problems = incompatibilities(old, signature) if old else []
        if problems:
            raise VersionFailed(
                "incompatible_signature",
                f"signature incompatible with serving version {current}: "
                + "; ".join(problems)
                + " (set allow_breaking_change: true in model.yaml to accept it)",
            )

    def _serve(self, m: ModelRecord, version: int) -> None:
        before = m.default_version()
        self._set_state(m, m.versions[version], S.SERVING)
        self._announce_swap(m, before)

    def _announce_swap(self, m: ModelRecord, before: int | None) -> None:
        after = m.default_version()
        if after != before:
            if after is not None:
                m.history = [*m.history[-(HISTORY - 1) :], after]
            self.events.publish("swap", m.name, version=after, data={"from": before})

    def _retire(self, m: ModelRecord, version: int) -> None:
        before = m.default_version()
        r = m.versions[version]
        self._set_state(m, r, S.DRAINING)
        self._announce_swap(m, before)
        task = asyncio.get_running_loop().create_task(self._drain_and_unload(m, r))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _drain_and_unload(self, m: ModelRecord, r: VersionRecord) -> None:
        handle = r.handle
        started = time.perf_counter()
        forced = False
        if handle is not None:
            handle.close()
            forced = not await handle.drained(m.settings.drain_timeout)
            if forced:
                log.warning(
                    "%s version %d: drain timeout after %.1fs with %d in flight; unloading anyway",
                    m.name,
                    r.version,
                    m.settings.drain_timeout,
                    handle.inflight,
                )
        drain_seconds = time.perf_counter() - started
        if handle is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._load_executor, handle.runtime.unload)
            await loop.run_in_executor(self._load_executor, release_memory)
        r.handle = None
        self._set_state(
            m,
            r,
            S.UNLOADED,
            reason="drain_timeout" if forced else None,
            drain_seconds=drain_seconds,
            forced=forced,
        )
        if (
            not m.offered
            and all(x.state in (S.UNLOADED, S.FAILED) for x in m.versions.values())
            and self._models.get(m.name) is m
        ):
            del self._models[m.name]
        self._wake.set()

    def _rebuild_map(self) -> None:
        routes = []
        for m in self._models.values():
            serving = {
                v: r.handle
                for v, r in m.versions.items()
                if r.state is S.SERVING and r.handle is not None
            }
            if serving or m.offered:
                routes.append(ModelRoute(m.name, serving, m.default_version(), m.all_labels()))
        self.serving_map = ServingMap.build(routes)
