"""The reconcile loop: from what sources offer (and operators ask) to what the serving map routes.

One :class:`Manager` per server. Inputs — a source's full offer (:meth:`Manager.publish`), an
operator's pin, rollback, label, unload or rollout action, a load or drain that ended, a timer
of the rate limiter or of a running rollout — only change records and mark the model dirty.
Each :meth:`Manager.tick` then takes one dirty model, asks :func:`baton.control.policy.next_action`
for its next step and performs it. **No step waits**: a load (verify → load → contract check →
warm-up → golden set → READY) runs as the model's own task, bounded across models by
:class:`~baton.control.loads.LoadSlots` (``max_concurrent_loads``); a retired version drains and
unloads in a task of its own. So a slow load of model A never delays a pin, rollback, abort or
serve of model B, and a load nobody wants any more is cancelled (it unloads what it built).

Every state change goes through :meth:`Manager._set_state` (legal transitions only, one event
each, race-free order: SERVING after the version is routable, DRAINING before it stops being);
every rollout change through :meth:`Manager._apply_rollout`; the serving map is built by one
function (:func:`baton.control.routes.serving_map_of`). A running rollout's gates are checked on
the manager's clock (every ``rollout_period`` seconds, only while it runs); nothing polls.

Tests step it deterministically, with a fake clock if they like::

    manager.publish("test", {"m": spec})
    actions = await manager.idle()   # tick until nothing is left to do, awaiting loads/drains

The request path never calls the manager: it reads :attr:`Manager.serving_map`.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict

from baton.artifacts.files import VersionFiles, directory_bytes
from baton.artifacts.verify import verify_version
from baton.control import policy
from baton.control.drain import drain_and_unload
from baton.control.lifecycle import VersionState, check_transition
from baton.control.loads import LoadSlots, plan_load
from baton.control.operator import cancel_reason, require_version, rollback_target, want
from baton.control.records import ModelRecord, PendingPin, RolloutRequest, VersionRecord
from baton.control.rollouts import (
    describe,
    finish,
    request_rollout,
    rollout_on_serve,
    rollout_windows,
    sync_windows,
)
from baton.control.routes import serving_map_of
from baton.errors import Conflict, NotFound, VersionFailed
from baton.loading.loader import Loader, RuntimeFactory
from baton.loading.preflight import MemoryLimits, MemoryPlan
from baton.observe.events import EventBus
from baton.rollout import controller
from baton.rollout.gates import GateConfig
from baton.rollout.ratelimit import LoadMeter, limit_update
from baton.rollout.schedule import Rollout, RolloutPlan, RolloutStatus
from baton.serving.serving_map import ServingMap
from baton.settings import ModelSettings
from baton.sources.base import ModelSpec

__all__ = ["Manager"]

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
        clock: Callable[[], float] = time.time,
        memory: MemoryLimits | None = None,
        max_concurrent_loads: int = 2,
        rollout_period: float = 1.0,
    ) -> None:
        self.events = events
        self.serving_map: ServingMap = ServingMap.empty()
        self._clock = clock
        self._memory = memory or MemoryLimits()
        self._rollout_period = rollout_period
        self._models: dict[str, ModelRecord] = {}
        self._offers: dict[str, Mapping[str, ModelSpec]] = {}
        self._offers_changed = False
        self._dirty: set[str] = set()  # models to reconcile
        self._due: list[tuple[float, str]] = []  # heap of (manager-clock time, model)
        self._due_at: dict[str, float] = {}  # the earliest time each model is due
        self._timer: asyncio.TimerHandle | None = None
        self._map_stale = True
        self._stopping = False
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._synced = asyncio.Event()
        self._restored: dict[str, RolloutRequest] = {}
        self._slots = LoadSlots(max_concurrent_loads)
        self._loader = Loader(
            threads=max_concurrent_loads,
            verifier=verifier,
            infer_executor=infer_executor,
            batch_observer=batch_observer,
            notify=events.publish,
            **({"runtime_factory": runtime_factory} if runtime_factory else {}),
        )
        self._unloader = ThreadPoolExecutor(1, thread_name_prefix="baton-unload")
        self._loads: dict[tuple[str, int], asyncio.Task] = {}
        self._drains: dict[str, set[asyncio.Task]] = {}
        self._loop_task: asyncio.Task | None = None
        self._load_meter = LoadMeter()

    # ---- inputs -------------------------------------------------------------------------
    def publish(self, source: str, specs: Mapping[str, ModelSpec]) -> None:
        """Take a source's complete offer; applied on the next tick."""
        self._offers[source] = dict(specs)
        self._offers_changed = True
        self._wake.set()

    def models(self) -> dict[str, ModelRecord]:
        return dict(self._models)

    def model(self, name: str) -> ModelRecord:
        record = self._models.get(name)
        if record is None:
            raise NotFound(f"unknown model '{name}'")
        return record

    # ---- operator intents (each takes effect on the next tick; none waits) ---------------
    def pin(self, name: str, version: int, *, action: str = "pin") -> None:
        """Serve exactly ``version`` (loading it if needed) until :meth:`unpin`. If it fails to
        load, the pin is refused: it goes back to what it was, with a ``pin`` event saying why.
        """
        m = self.model(name)
        require_version(m, version)
        want(m, version)
        previous = m.pinned if m.pending_pin is None else m.pending_pin.previous
        m.pinned = version
        serving = version in m.serving()
        m.pending_pin = None if serving else PendingPin(version, previous, action)
        self.events.publish("pin", name, version=version, state="pinned",
                            data={"previous": previous, "action": action})  # fmt: skip
        self._operator(m)

    def unpin(self, name: str) -> None:
        m = self.model(name)
        m.pinned, m.pending_pin = None, None
        self.events.publish("unpin", name)
        self._operator(m)

    def rollback(self, name: str) -> int:
        """Pin the version that was the default before the current one; returns it."""
        m = self.model(name)
        target, current = rollback_target(m), m.default_version()
        self.pin(name, target, action="rollback")
        self.events.publish("rollback", name, version=target, reason="operator",
                            data={"from": current})  # fmt: skip
        return target

    def set_label(self, name: str, label: str, version: int) -> None:
        m = self.model(name)
        if label.isdigit() or not label or "/" in label:
            raise Conflict("a label must be a non-numeric name without '/'")
        require_version(m, version)
        want(m, version)
        m.labels[label] = version
        self.events.publish("label", name, version=version, data={"label": label})
        self._operator(m)

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Admin load/unload of a whole model (the repository extension)."""
        m = self.model(name)
        m.disabled = not enabled
        self.events.publish("enable" if enabled else "disable", name)
        self._operator(m)

    def start_rollout(
        self, name: str, candidate: int, plan: RolloutPlan | None = None,
        gates: GateConfig | None = None,
    ) -> None:  # fmt: skip
        """Roll ``name`` out to ``candidate`` as a canary (loading it first if needed)."""
        m = self.model(name)
        m.rollout_request = request_rollout(m, candidate, plan, gates)
        want(m, candidate)
        if candidate in m.serving():
            self._start_rollout_on_serve(m, candidate, m.default_version())
        self._operator(m)

    def rollout_action(self, name: str, action: str) -> Rollout:
        """An operator's ``pause``, ``resume``, ``promote`` or ``abort`` of the running rollout."""
        m = self.model(name)
        if m.rollout is None:
            raise Conflict(f"model '{name}' has no rollout in progress")
        new = controller.operate(m.rollout, action, self._clock())
        self._apply_rollout(m, new, operator=action)
        self._operator(m)
        return new

    def apply_rollout(self, name: str, rollout: Rollout, **data) -> None:
        """Adopt a given next state of a model's rollout (tests, and restored state)."""
        m = self.model(name)
        if m.rollout is not None and m.rollout != rollout:
            self._apply_rollout(m, rollout, **data)

    def restore_rollout(self, name: str, request: RolloutRequest) -> None:
        """Resume a rollout recorded before a restart, once the model's versions are up."""
        self._restored[name] = request

    # ---- the loop -----------------------------------------------------------------------
    def tick(self) -> policy.Action | None:
        """Apply pending offers, then perform the next action of one dirty model (none of
        which waits); returns it, or ``None`` when no model has anything to do."""
        if self._offers_changed:
            self._apply_offers()
        now = self._clock()
        while self._due and self._due[0][0] <= now:
            at, name = heapq.heappop(self._due)
            if self._due_at.get(name) == at:
                del self._due_at[name]
                self._dirty.add(name)
        action = None
        while self._dirty:
            m = self._models.get(name := min(self._dirty))
            if m is None:
                self._dirty.discard(name)
                continue
            self._limit_updates(m, now)
            self._check_rollout(m, now)
            self._announce_swap(m)  # a pin, unpin or label may have moved the default
            action = policy.next_action(m.view())
            if action is None:
                self._dirty.discard(name)
                if not m.loading():
                    m.operator_asked = False  # settled: what an operator asked for is done
                continue
            self._perform(m, action)
            break
        self._publish_map()
        if not self._dirty and not self._loads and self._offers and not self._synced.is_set():
            self._synced.set()  # everything offered at start has loaded (or failed)
        self._notify()
        return action

    async def run(self) -> None:
        """Reconcile forever: tick until idle, then sleep until something changes."""
        while True:
            self._wake.clear()
            while self.tick() is not None:
                pass
            await self._wake.wait()

    async def idle(self, drains: bool = True) -> list[policy.Action]:
        """Tick until nothing is left to do and no load (nor, with ``drains``, any drain) is
        under way; returns the actions taken. For tests and tools; a load that never ends keeps
        this waiting."""
        actions = []
        while True:
            while (action := self.tick()) is not None:
                actions.append(action)
            pending = [*self._loads.values(), *(self._all_drains() if drains else ())]
            if not pending:
                return actions
            await asyncio.wait(pending)

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(self.run(), name="baton-manager")

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds, re-checking after every change; ``False`` on
        timeout."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._changed.wait()
            return True
        except TimeoutError:
            return False

    async def wait_drained(self) -> None:
        """Wait for every background drain/unload to finish."""
        while drains := self._all_drains():
            await asyncio.gather(*drains, return_exceptions=True)

    async def stop(self) -> None:
        """Stop reconciling; cancel loads under way (each unloads what it built), then drain
        and unload every loaded version."""
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()
        for (name, version), task in list(self._loads.items()):
            self._models[name].versions[version].cancelling = True
            task.cancel()
        await asyncio.gather(*self._loads.values(), return_exceptions=True)
        for m in self._models.values():
            m.offered = False
            for v, r in sorted(m.versions.items()):
                if r.state in (S.READY, S.SERVING):
                    self._retire(m, v)
        self._publish_map()
        await self.wait_drained()
        self._loader.shutdown()
        self._unloader.shutdown(wait=True)

    # ---- scheduling ---------------------------------------------------------------------
    def _operator(self, m: ModelRecord) -> None:
        """An operator acted on ``m``: loads it needs until it settles go first."""
        m.operator_asked = True
        self._mark(m.name)

    def _mark(self, name: str) -> None:
        """``name`` has something to reconcile, and may route differently: on the next tick."""
        self._dirty.add(name)
        self._map_stale = True
        self._wake.set()

    def _schedule(self, name: str, at: float) -> None:
        """Reconcile ``name`` at manager-clock time ``at`` (the loop's timer wakes for the
        earliest such time; with a fake clock, any tick after ``at`` does)."""
        if self._due_at.get(name, float("inf")) <= at:
            return
        self._due_at[name] = at
        heapq.heappush(self._due, (at, name))
        if self._due[0] != (at, name):
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, at - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None  # a loop may run a timer slightly early: tick() compares times
        self._wake.set()
        if self._due:
            delay = max(0.0, self._due[0][0] - self._clock())
            self._timer = asyncio.get_running_loop().call_later(max(delay, 0.001),
                                                                self._timer_fired)  # fmt: skip

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _all_drains(self) -> list[asyncio.Task]:
        return [t for tasks in self._drains.values() for t in tasks]

    # ---- offers -------------------------------------------------------------------------
    def _apply_offers(self) -> None:
        self._offers_changed = False
        merged: dict[str, ModelSpec] = {}
        for specs in self._offers.values():
            merged.update(specs)
        for name, spec in merged.items():
            m = self._models.setdefault(name, ModelRecord(name))
            if name in self._restored and m.rollout is None:
                m.rollout_request = self._restored.pop(name)
            if spec.config_error != m.config_error and spec.config_error:
                self.events.publish(
                    "config_error", name, reason="bad_config", message=spec.config_error
                )
            m.settings, m.available = spec.settings, dict(spec.versions)
            m.config_error, m.offered = spec.config_error, True
            # A record keeps the fingerprint it was loaded from: for FAILED/UNLOADED versions the
            # policy compares it with the offer to decide on a retry; loaded ones are immutable.
            for v, r in m.versions.items():
                files = m.available.get(v)
                changed = files is not None and files.fingerprint != r.files.fingerprint
                if changed and r.state in (S.READY, S.SERVING):
                    self.events.publish(
                        "ignored_change", name, version=v,
                        message="files of a loaded version changed; versions are immutable, "
                        "publish a new version number instead",
                    )  # fmt: skip
            # Forget unloaded versions whose files are gone: they cannot come back, and a model
            # that goes through thousands of versions must not keep a record of each.
            for v in [v for v, r in m.versions.items()
                      if r.state is S.UNLOADED and v not in m.available]:  # fmt: skip
                del m.versions[v]
            self._dirty.add(name)
        for name, m in list(self._models.items()):
            if name not in merged:
                m.offered = False
                self._dirty.add(name)
                self._forget_if_gone(m)

    def _forget_if_gone(self, m: ModelRecord) -> None:
        gone = all(r.state in (S.UNLOADED, S.FAILED) for r in m.versions.values())
        if not m.offered and gone and self._models.get(m.name) is m:
            del self._models[m.name]

    # ---- state changes ------------------------------------------------------------------
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
        r.state, r.since = state, self._clock()
        if state in (S.FAILED, S.UNLOADED):
            r.reason, r.message = reason, message
        elif state is S.DISCOVERED:
            r.reason = r.message = None
        if state is S.SERVING:
            self._publish_map(force=True)
        self.events.publish("state", m.name, version=r.version, state=state.value,
                            reason=reason, message=message, data=data)  # fmt: skip
        if was_serving:
            self._publish_map(force=True)
        self._dirty.add(m.name)
        self._wake.set()
        self._notify()

    def _publish_map(self, force: bool = False) -> None:
        if force or self._map_stale:
            self.serving_map = serving_map_of(self._models.values())
            self._map_stale = False

    def _perform(self, m: ModelRecord, action: policy.Action) -> None:
        self._map_stale = True
        if isinstance(action, policy.Load):
            self._start_load(m, action.version)
        elif isinstance(action, policy.Serve):
            self._serve(m, action.version)
        elif isinstance(action, policy.Retire):
            self._retire(m, action.version)
        elif isinstance(action, policy.Cancel):
            self._cancel_load(m, action.version)

    # ---- loading ------------------------------------------------------------------------
    def _start_load(self, m: ModelRecord, version: int) -> None:
        files = m.available[version]
        r = m.versions.get(version)
        if r is None:
            r = m.versions[version] = VersionRecord(version, files)
        r.files, r.retry, r.cancelling, r.estimate = files, False, False, 0
        self._set_state(m, r, S.DISCOVERED, path=str(files.path))
        urgent = m.operator_asked or version == m.pinned
        key = (m.name, version)
        task = asyncio.get_running_loop().create_task(
            self._load(m, r, urgent), name=f"load {m.name} v{version}"
        )
        self._loads[key] = task
        task.add_done_callback(lambda t: self._load_ended(key, t))

    def _load_ended(self, key: tuple[str, int], task: asyncio.Task) -> None:
        if self._loads.get(key) is task:
            del self._loads[key]
        self._wake.set()

    async def _load(self, m: ModelRecord, r: VersionRecord, urgent: bool) -> None:
        """The model's load task: wait for a slot, pre-flight memory, load; ends READY, FAILED
        or (cancelled) UNLOADED, then marks the model for the next tick."""
        try:
            async with self._slots.slot(urgent):
                r.files_bytes = await asyncio.to_thread(directory_bytes, r.files.path)
                plan = self._memory_plan(m, r)
                if plan.decision == "refuse":
                    self._fail(m, r, "insufficient_memory", plan.reason)
                    return
                if plan.decision == "retire_first":  # resource-preserving: unavailable meanwhile
                    for v in [v for v, x in m.versions.items() if x.state in (S.READY, S.SERVING)]:
                        self._retire(m, v)
                    await asyncio.gather(*self._drains.get(m.name, ()), return_exceptions=True)
                handle, warmed = await self._loader.load(
                    m.name, r.version, r.files, m.settings, self._reference(m),
                    lambda phase, **data: self._set_state(m, r, S(phase), **data),
                )  # fmt: skip
        except asyncio.CancelledError:
            r.handle = None
            why = "the server is shutting down" if self._stopping else cancel_reason(m, r.version)
            self._set_state(m, r, S.UNLOADED, "cancelled", f"load cancelled: {why}")
            self._forget_if_gone(m)
            return
        except VersionFailed as failure:
            self._fail(m, r, failure.reason, str(failure))
            return
        r.handle, r.signature, r.platform = handle, handle.signature, handle.runtime.platform
        r.memory = handle.memory_bytes
        self._set_state(m, r, S.READY, **warmed, memory_bytes=r.memory)

    def _reference(self, m: ModelRecord):
        """The serving (version, signature, structure) a new version must stay compatible with."""
        current = m.default_version()
        serving = m.versions[current] if current is not None else None
        if serving is None or serving.signature is None or serving.handle is None:
            return None
        return current, serving.signature, serving.handle.runtime.structure()

    def _memory_plan(self, m: ModelRecord, r: VersionRecord) -> MemoryPlan:
        """The memory pre-flight for loading ``r``, published as a ``memory`` event."""
        plan = plan_load(self._models.values(), m, r, self._memory)
        self.events.publish("memory", m.name, version=r.version, state=plan.decision,
                            message=plan.reason, data=asdict(plan))  # fmt: skip
        return plan

    def _fail(self, m: ModelRecord, r: VersionRecord, reason: str, message: str) -> None:
        """``r`` FAILED: refuse a pin that waited for it, and say what the policy falls back to."""
        chosen_before = r.version in m.aspired()
        r.handle = None
        self._set_state(m, r, S.FAILED, reason, message)
        pending = m.pending_pin
        if pending is not None and pending.version == r.version:
            m.pinned, m.pending_pin = pending.previous, None
            self.events.publish(
                "pin", m.name, version=r.version, state="refused", reason=reason,
                message=f"{pending.action} to version {r.version} refused: it failed to load "
                f"({reason}); version {m.default_version()} keeps serving",
            )  # fmt: skip
        aspired = m.aspired()
        if chosen_before and r.version not in aspired and m.offered and not m.disabled:
            instead = ", ".join(map(str, sorted(aspired)))
            serving = m.default_version()
            self.events.publish(
                "fallback", m.name, version=r.version, reason=reason,
                message=f"version {r.version} FAILED ({reason}); "
                + (f"the version policy falls back to version {instead}" if aspired
                   else "no other version to fall back to")
                + (f"; version {serving} keeps serving" if serving is not None else ""),
                data={"aspired": sorted(aspired)},
            )  # fmt: skip
        self._forget_if_gone(m)

    def _cancel_load(self, m: ModelRecord, version: int) -> None:
        r = m.versions[version]
        r.cancelling = True
        task = self._loads.get((m.name, version))
        if task is not None:
            task.cancel()

    # ---- serving and retiring -----------------------------------------------------------
    def _serve(self, m: ModelRecord, version: int) -> None:
        before = m.default_version()
        started = rollout_on_serve(m, version, before, self._clock())
        if started is not None:  # decided before the version becomes routable
            m.rollout, m.rollout_gates = started
            m.rollout_request, m.rollout_due = None, None
        if m.pending_pin is not None and m.pending_pin.version == version:
            m.pending_pin = None  # the pin took effect
        self._set_state(m, m.versions[version], S.SERVING)
        if started is not None:
            self._publish_rollout(m, m.rollout)
        sync_windows(m)
        self._announce_swap(m)

    def _start_rollout_on_serve(self, m: ModelRecord, candidate: int, before: int | None) -> None:
        started = rollout_on_serve(m, candidate, before, self._clock())
        if started is not None:
            m.rollout, m.rollout_gates = started
            m.rollout_request, m.rollout_due = None, None
            sync_windows(m)
            self._publish_map(force=True)
            self._publish_rollout(m, m.rollout)

    def _retire(self, m: ModelRecord, version: int) -> None:
        r = m.versions[version]
        self._set_state(m, r, S.DRAINING)
        self._announce_swap(m)
        task = asyncio.get_running_loop().create_task(self._drain(m, r))
        drains = self._drains.setdefault(m.name, set())
        drains.add(task)
        task.add_done_callback(drains.discard)

    async def _drain(self, m: ModelRecord, r: VersionRecord) -> None:
        drained = await drain_and_unload(r.handle, m.settings.drain_timeout, self._unloader)
        r.handle = None
        message = None
        if drained.forced:
            message = (f"drain timeout after {m.settings.drain_timeout:g} s with "
                       f"{drained.inflight} in flight; unloaded anyway")  # fmt: skip
        self._set_state(m, r, S.UNLOADED, "drain_timeout" if drained.forced else None, message,
                        drain_seconds=drained.seconds, forced=drained.forced)  # fmt: skip
        self._forget_if_gone(m)

    def _announce_swap(self, m: ModelRecord) -> None:
        """A ``swap`` event when the model's default version differs from the one last
        announced (whatever changed it: a serve, a retirement, a pin, a rollout step)."""
        after, before = m.default_version(), m.announced
        if after != before:
            m.announced = after
            if after is not None:
                m.history = [*m.history[-(HISTORY - 1) :], after]
            m.updates = m.updates.swapped(self._clock())
            self._publish_map(force=True)  # routable before it is announced
            self.events.publish("swap", m.name, version=after, data={"from": before})

    # ---- rollouts -----------------------------------------------------------------------
    def _check_rollout(self, m: ModelRecord, now: float) -> None:
        """Evaluate a running rollout's gates when due (every ``rollout_period`` seconds)."""
        rollout = m.rollout
        if rollout is None or rollout.status is not RolloutStatus.RUNNING:
            m.rollout_due = None
            return
        if m.rollout_due is None:
            m.rollout_due = now + self._rollout_period
        if now >= m.rollout_due:
            stable, candidate = rollout_windows(m)
            step = controller.check(rollout, stable, candidate, m.rollout_gates, now)
            if step.verdict is not None:
                m.last_verdict = step.verdict
            m.rollout_due = now + self._rollout_period
            if step.rollout != rollout:
                verdict = step.verdict
                self._apply_rollout(m, step.rollout, verdict=asdict(verdict),
                                    failed_gates=list(verdict.gates))  # fmt: skip
        if m.rollout is not None and m.rollout_due is not None:
            self._schedule(m.name, m.rollout_due)

    def _apply_rollout(self, m: ModelRecord, rollout: Rollout, **data) -> None:
        """The one path every rollout change takes (gate checks, operators, restored state)."""
        old = m.rollout
        new_step = old is None or rollout.step != old.step or rollout.status != old.status
        if rollout.finished:
            finish(m, rollout)
        else:
            m.rollout = rollout
            if rollout.status is not RolloutStatus.RUNNING:
                m.rollout_due = None
        sync_windows(m, reset=new_step)
        self._publish_map(force=True)
        self._publish_rollout(m, rollout, **data)
        self._announce_swap(m)
        self._mark(m.name)
        self._notify()

    def _publish_rollout(self, m: ModelRecord, rollout: Rollout, **data) -> None:
        self.events.publish(
            "rollout", m.name, version=rollout.candidate, state=rollout.status.value,
            reason=rollout.reason, data={**describe(rollout, m.rollout_gates), **data},
        )  # fmt: skip

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
            self._schedule(m.name, now + step.wait)

    def loads_under_way(self) -> dict[str, list[int]]:
        """Models with a load under way, and which versions (for views and tests)."""
        return {name: loading for name, m in self._models.items() if (loading := m.loading())}
