"""The reconcile loop: from what sources offer to what the serving map routes.

One :class:`Manager` per server. Sources publish full offers (:meth:`Manager.publish`); each
:meth:`Manager.tick` applies pending offers and admin overrides, asks
:func:`baton.control.policy.next_action` for one step and performs it: load (verify → load →
contract check → warm-up → golden set → READY), serve (make routable), or retire (stop routing,
drain in the background, unload). Every state change goes through
:func:`baton.control.lifecycle.check_transition` and is published on the event bus, in race-free order: SERVING after the version is
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
from concurrent.futures import Executor
from dataclasses import asdict

from baton.artifacts.files import VersionFiles, directory_bytes
from baton.artifacts.verify import verify_version
from baton.control import policy
from baton.control.lifecycle import VersionState, check_transition
from baton.control.records import ModelRecord, RolloutRequest, VersionRecord
from baton.control.rollouts import (
    describe,
    finish,
    request_rollout,
    rollout_on_serve,
    sync_windows,
)
from baton.errors import Conflict, NotFound, VersionFailed
from baton.loading.loader import Loader, RuntimeFactory
from baton.loading.memory import release_memory
from baton.loading.preflight import MemoryLimits, MemoryPlan, plan_load
from baton.observe.events import EventBus
from baton.rollout.gates import GateConfig
from baton.rollout.ratelimit import LoadMeter, limit_update
from baton.rollout.schedule import Rollout, RolloutPlan
from baton.serving.serving_map import ModelRoute, ServingMap
from baton.settings import ModelSettings
from baton.sources.base import ModelSpec

__all__ = ["Manager"]

log = logging.getLogger("baton.control.manager")
S = VersionState
HISTORY = 100  # default versions remembered per model, for rollback


class Manager:
    def __init__(
        self,
        events: EventBus,
        *,
        runtime_factory: RuntimeFactory | None = None,
        verifier: Callable[[VersionFiles, ModelSettings], dict] = verify_version,
        infer_executor: Executor | None = None,
        batch_observer: Callable[[str, int, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        memory: MemoryLimits | None = None,
    ) -> None:
        self.events = events
        self._memory = memory or MemoryLimits()
        self._clock = clock
        self.serving_map: ServingMap = ServingMap.empty()
        self._models: dict[str, ModelRecord] = {}
        self._offers: dict[str, Mapping[str, ModelSpec]] = {}
        self._dirty = False
        self._wake = asyncio.Event()
        self._loader = Loader(
            verifier=verifier,
            infer_executor=infer_executor,
            batch_observer=batch_observer,
            notify=events.publish,
            **({"runtime_factory": runtime_factory} if runtime_factory else {}),
        )
        self._drains: set[asyncio.Task] = set()
        self._synced = asyncio.Event()
        self._restored: dict[str, RolloutRequest] = {}
        self._changed = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._load_meter = LoadMeter()

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
        now = self._clock()
        for m in self._models.values():
            self._limit_updates(m, now)
        views = [m.view() for m in self._models.values()]
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
        if self._timer is not None:
            self._timer.cancel()
        for m in self._models.values():
            m.offered = False
            for v, r in sorted(m.versions.items()):
                if r.state in (S.READY, S.SERVING):
                    self._retire(m, v)
        await self.wait_drained()
        self._loader.shutdown()

    # ---- update rate limits -------------------------------------------------------------
    def _limit_updates(self, m: ModelRecord, now: float) -> None:
        """Let the rate limiter admit, or hold back, versions newer than the last admitted."""
        limits = m.settings.update_limits.limits()
        load = None
        if limits.busy_threshold is not None:
            served = sum(r.handle.served for r in m.versions.values() if r.handle is not None)
            load = self._load_meter.rate(m.name, now, served)
        step = limit_update(m.updates, m.offered_versions(), bool(m.serving()), now, load, limits)
        m.updates = step.gate
        if (e := step.event) is not None:
            self.events.publish("rate_limit", m.name, version=e.version, state=e.decision,
                                reason=e.reason, data=asdict(e))  # fmt: skip
        if step.wait is None:
            self._load_meter.forget(m.name)
        else:
            self._wake_in(step.wait)

    def _wake_in(self, seconds: float) -> None:
        """Reconcile again after ``seconds`` (one timer: the earliest asked for wins)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + seconds
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = loop.call_at(when, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None  # a loop may run a timer slightly before its time: never compare
        self._wake.set()

    # ---- actions ------------------------------------------------------------------------
    def _apply_offers(self) -> None:
        self._dirty = False
        merged: dict[str, ModelSpec] = {}
        for specs in self._offers.values():
            merged.update(specs)
        for name, spec in merged.items():
            record = self._models.setdefault(name, ModelRecord(name))
            if name in self._restored and record.rollout is None:
                record.rollout_request = self._restored.pop(name)
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
        r.files, r.files_bytes = files, directory_bytes(files.path)
        self._set_state(m, r, S.DISCOVERED, path=str(files.path))
        plan = self._memory_plan(m, r)
        if plan.decision == "refuse":
            self._set_state(m, r, S.FAILED, "insufficient_memory", plan.reason)
            return
        if plan.decision == "retire_first":  # resource-preserving: unavailable while it loads
            for v in [v for v, x in m.versions.items() if x.state in (S.READY, S.SERVING)]:
                self._retire(m, v)
            await self.wait_drained()
        current = m.default_version()
        serving = m.versions[current] if current is not None else None
        reference = None
        if serving is not None and serving.signature is not None and serving.handle is not None:
            reference = (current, serving.signature, serving.handle.runtime.structure())
        try:
            handle, warmed = await self._loader.load(
                m.name, version, files, m.settings, reference,
                lambda state, **data: self._set_state(m, r, state, **data),
            )  # fmt: skip
        except VersionFailed as failure:
            r.handle = None
            log.warning("%s version %d FAILED (%s): %s", m.name, version, failure.reason, failure)
            self._set_state(m, r, S.FAILED, failure.reason, str(failure))
            return
        r.handle, r.signature, r.platform = handle, handle.signature, handle.runtime.platform
        r.memory = handle.memory_bytes
        self._set_state(m, r, S.READY, **warmed, memory_bytes=r.memory)

    def _memory_plan(self, m: ModelRecord, r: VersionRecord) -> MemoryPlan:
        """The memory pre-flight for loading ``r``, published as a ``memory`` event."""
        plan = plan_load(self._models.values(), m, r, self._memory)
        self.events.publish("memory", m.name, version=r.version, state=plan.decision,
                            message=plan.reason, data=asdict(plan))  # fmt: skip
        return plan

    def _serve(self, m: ModelRecord, version: int) -> None:
        before = m.default_version()
        started = rollout_on_serve(m, version, before, time.time())
        if started is not None:  # decided before the version becomes routable
            m.rollout, m.rollout_gates = started
            m.rollout_request = None
        self._set_state(m, m.versions[version], S.SERVING)
        if started is not None:
            self._publish_rollout(m, m.rollout)
        sync_windows(m)
        self._announce_swap(m, before)

    # ---- rollouts -----------------------------------------------------------------------
    def start_rollout(
        self, name: str, candidate: int, plan: RolloutPlan | None = None,
        gates: GateConfig | None = None,
    ) -> None:  # fmt: skip
        """Roll ``name`` out to ``candidate`` as a canary (loading it first if needed)."""
        m = self.model(name)
        m.rollout_request = request_rollout(m, candidate, plan, gates)
        if candidate in m.serving():
            self._serve_started(m, candidate)
        self._wake.set()

    def restore_rollout(self, name: str, request: RolloutRequest) -> None:
        """Resume a rollout recorded before a restart, once the model's versions are up."""
        self._restored[name] = request

    def apply_rollout(self, name: str, rollout: Rollout, **data) -> None:
        """Adopt the controller's (or an operator's) next state of a model's rollout."""
        m = self.model(name)
        if m.rollout is None or m.rollout == rollout:
            return
        before = m.default_version()
        new_step = rollout.step != m.rollout.step or rollout.status != m.rollout.status
        if rollout.finished:
            finish(m, rollout)
        else:
            m.rollout = rollout
        sync_windows(m, reset=new_step)
        self._rebuild_map()
        self._publish_rollout(m, rollout, **data)
        self._announce_swap(m, before)
        self._notify()
        self._wake.set()

    def _serve_started(self, m: ModelRecord, candidate: int) -> None:
        started = rollout_on_serve(m, candidate, m.default_version(), time.time())
        if started is not None:
            m.rollout, m.rollout_gates = started
            m.rollout_request = None
            sync_windows(m)
            self._rebuild_map()
            self._publish_rollout(m, m.rollout)

    def _publish_rollout(self, m: ModelRecord, rollout: Rollout, **data) -> None:
        self.events.publish(
            "rollout", m.name, version=rollout.candidate, state=rollout.status.value,
            reason=rollout.reason, data={**describe(rollout, m.rollout_gates), **data},
        )  # fmt: skip

    def _announce_swap(self, m: ModelRecord, before: int | None) -> None:
        after = m.default_version()
        if after != before:
            if after is not None:
                m.history = [*m.history[-(HISTORY - 1) :], after]
            m.updates = m.updates.swapped(self._clock())
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
                    m.name, r.version, m.settings.drain_timeout, handle.inflight,
                )  # fmt: skip
        drain_seconds = time.perf_counter() - started
        if handle is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._loader.executor, handle.runtime.unload)
            await loop.run_in_executor(self._loader.executor, release_memory)
        r.handle = None
        self._set_state(m, r, S.UNLOADED, reason="drain_timeout" if forced else None,
                        drain_seconds=drain_seconds, forced=forced)  # fmt: skip
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
                routes.append(
                    ModelRoute(m.name, serving, m.default_version(), m.all_labels(), m.canary())
                )
        self.serving_map = ServingMap.build(routes)
