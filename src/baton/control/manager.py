"""The reconcile loop: from what sources offer (and operators ask) to what the serving map routes.

One :class:`Manager` per server. Inputs — a source's full offer (:meth:`Manager.publish`), an
operator's intent (pin, rollback, label, unload, rollout), a load or drain that ended, a timer —
only change records and put the model on the work queue (:mod:`baton.control.queue`). Each
:meth:`Manager.tick` takes the next model off it, asks :func:`baton.control.policy.next_action`
for its next step and performs it. **No step waits**: a load runs as a task of its own, bounded
across models by :class:`~baton.control.loads.LoadSlots` (``max_concurrent_loads``, an
operator's loads first), and a retired version drains in a task of its own. So a slow load of
model A never delays a pin, rollback, abort or serve of model B, and a load nobody wants any
more is cancelled (it unloads what it built). A running rollout's gates are checked on the
manager's clock, every ``rollout_period`` seconds while it runs; nothing polls.

State changes, serving-map updates and ``swap`` events all go through
:class:`~baton.control.transitions.Transitions` (race-free order); rollout changes through
:class:`~baton.control.rollout_driver.RolloutDriver`. Tests step it deterministically, with a
fake clock if they like::

    manager.publish("test", {"m": spec})
    actions = await manager.idle()   # tick until nothing is left to do, awaiting loads/drains

The request path never calls the manager: it reads :attr:`Manager.serving_map`. ``on_map``
sees each new map before any event describes it (with ``--workers N``, every worker process
switches to it there).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict

from baton.artifacts.files import VersionFiles, directory_bytes
from baton.artifacts.verify import verify_version
from baton.control import policy
from baton.control.drain import drain_and_unload, unload_report
from baton.control.failures import consequences
from baton.control.lifecycle import VersionState
from baton.control.loads import LoadSlots, plan_load
from baton.control.offers import apply_offers, forget_if_gone
from baton.control.operator import cancel_reason, require_version, rollback_target, want
from baton.control.queue import ReconcileQueue
from baton.control.rate_limits import limit_updates
from baton.control.records import ModelRecord, PendingPin, RolloutRequest, VersionRecord
from baton.control.rollout_driver import RolloutDriver
from baton.control.rollouts import request_rollout, sync_windows
from baton.control.sequences import Sequences
from baton.control.transitions import Transitions
from baton.errors import Conflict, NotFound, VersionFailed
from baton.loading.loader import Loader, RuntimeFactory
from baton.loading.preflight import MemoryLimits, MemoryPlan
from baton.observe.events import EventBus
from baton.rollout import controller
from baton.rollout.gates import GateConfig
from baton.rollout.ratelimit import LoadMeter
from baton.rollout.schedule import Rollout, RolloutPlan
from baton.serving.serving_map import ServingMap
from baton.settings import ModelSettings
from baton.sources.base import ModelSpec, Offer, Unknown
from baton.types import is_digits

__all__ = ["Manager"]

S = VersionState


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
        on_map: Callable[[ServingMap], None] | None = None,
    ) -> None:
        self.events = events
        self._clock = clock
        self._memory = memory or MemoryLimits()
        self._models: dict[str, ModelRecord] = {}
        self._offers: dict[str, Mapping[str, ModelSpec]] = {}
        self._offers_changed = False
        self._unavailable: dict[str, str] = {}  # source → why it cannot see its store
        #: live sequences of each model that has had a stateful version (outlive serving maps)
        self.sequences = Sequences(events, lambda: self.serving_map, lambda: self._stopping)
        self._queue = ReconcileQueue(clock)
        self._t = Transitions(self._models, events, clock, self._changed_model, on_map,
                              self.sequences.indexes)  # fmt: skip
        self._rollouts = RolloutDriver(events, self._t, self._queue, clock, rollout_period,
                                       self._rollout_changed)  # fmt: skip
        self._stopping = False
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
    def publish(self, source: str, offer: Offer) -> None:
        """Take a source's complete offer (applied on the next tick), or its report that it
        cannot see its store: then its last offer stands, and a ``source`` event says so."""
        if isinstance(offer, Unknown):
            if source not in self._unavailable:
                self.events.publish("source", "", state="unavailable", message=offer.reason,
                                    data={"source": source})  # fmt: skip
            self._unavailable[source] = offer.reason
            return
        if self._unavailable.pop(source, None) is not None:
            self.events.publish("source", "", state="available", data={"source": source})
        self._offers[source] = dict(offer)
        self._offers_changed = True
        self._queue.wake.set()

    def unavailable_sources(self) -> dict[str, str]:
        """Sources that cannot see their store now, and why (their last offers stand)."""
        return dict(self._unavailable)

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
        if is_digits(label) or not label or "/" in label:
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
        self._rollouts.start_if_serving(m, candidate)
        self._operator(m)

    def rollout_action(self, name: str, action: str) -> Rollout:
        """An operator's ``pause``, ``resume``, ``promote`` or ``abort`` of the running rollout."""
        m = self.model(name)
        if m.rollout is None:
            raise Conflict(f"model '{name}' has no rollout in progress")
        new = controller.operate(m.rollout, action, self._clock())
        self._rollouts.apply(m, new, operator=action)
        self._operator(m)
        return new

    def apply_rollout(self, name: str, rollout: Rollout, **data) -> None:
        """Adopt a given next state of a model's rollout (tests, and restored state)."""
        m = self.model(name)
        if m.rollout is not None and m.rollout != rollout:
            self._rollouts.apply(m, rollout, **data)

    def restore_rollout(self, name: str, request: RolloutRequest) -> None:
        """Resume a rollout recorded before a restart, once the model's versions are up."""
        self._restored[name] = request

    # ---- the loop -----------------------------------------------------------------------
    def tick(self) -> policy.Action | None:
        """Apply pending offers, then perform the next action of one dirty model (none of
        which waits); returns it, or ``None`` when no model has anything to do."""
        if self._offers_changed:
            self._offers_changed = False
            changed = apply_offers(self._models, self._offers.values(), self._restored,
                                   self.events.publish)  # fmt: skip
            for name in changed:
                self._mark(name)
        now = self._clock()
        action = None
        seen: set[str] = set()
        while (name := self._queue.next(now)) is not None:
            m = self._models.get(name)
            if m is None or name in seen:  # gone, or asked for again within this pass
                if m is None:
                    self._queue.done(name)
                else:
                    self._queue.at(name, now + 0.001)  # look again in the next pass
                    self._queue.done(name)
                continue
            seen.add(name)
            self._limit_updates(m, now)
            self._rollouts.check(m, now)
            self._t.announce_swap(m)  # a pin, unpin or label may have moved the default
            action = policy.next_action(m.view())
            if action is None:
                self._queue.done(name)
                if not m.loading():
                    m.operator_asked = False  # settled: what an operator asked for is done
                continue
            self._perform(m, action)
            break
        self._t.publish_map()
        if self._queue.empty and not self._loads and self._offers and not self._synced.is_set():
            self._synced.set()  # everything offered at start has loaded (or failed)
        self._notify()
        return action

    async def run(self) -> None:
        """Reconcile forever: tick until idle, then sleep until something changes."""
        while True:
            self._queue.wake.clear()
            while self.tick() is not None:
                pass
            await self._queue.wake.wait()

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
        self._queue.close()
        for (name, version), task in list(self._loads.items()):
            m = self._models.get(name)  # a cancelled load's model may be forgotten already
            record = m.versions.get(version) if m is not None else None
            if record is not None:
                record.cancelling = True
            task.cancel()
        await asyncio.gather(*self._loads.values(), return_exceptions=True)
        for m in self._models.values():
            m.offered = False
            for v, r in sorted(m.versions.items()):
                if r.state in (S.READY, S.SERVING):
                    self._retire(m, v)
        self._t.publish_map()
        await self.wait_drained()
        self._loader.shutdown()
        self._unloader.shutdown(wait=True)
        self.sequences.shutdown()

    # ---- scheduling ---------------------------------------------------------------------
    def _operator(self, m: ModelRecord) -> None:
        """An operator acted on ``m``: loads it needs until it settles go first."""
        m.operator_asked = True
        self._mark(m.name)

    def _mark(self, name: str) -> None:
        """``name`` has something to reconcile, and may route differently: on the next tick."""
        self._queue.mark(name)
        self._t.stale = True

    @property
    def serving_map(self) -> ServingMap:
        """The immutable routing snapshot the request path reads (one reference, no lock)."""
        return self._t.serving_map

    def _rollout_changed(self, name: str) -> None:
        self._mark(name)
        self._notify()

    def _changed_model(self, name: str) -> None:
        self._queue.mark(name)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _all_drains(self) -> list[asyncio.Task]:
        return [t for tasks in self._drains.values() for t in tasks]

    # ---- actions ----------------------------------------------------------------------
    def _perform(self, m: ModelRecord, action: policy.Action) -> None:
        self._t.stale = True
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
        self._t.set_state(m, r, S.DISCOVERED, path=str(files.path))
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
        self._queue.wake.set()

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
                    m.name, r.version, r.files, m.settings, m.compatibility_reference(),
                    lambda phase, **data: self._t.set_state(m, r, S(phase), **data),
                )  # fmt: skip
        except asyncio.CancelledError:
            r.handle = None
            why = "the server is shutting down" if self._stopping else cancel_reason(m, r.version)
            self._t.set_state(m, r, S.UNLOADED, "cancelled", f"load cancelled: {why}")
            forget_if_gone(self._models, m)
            return
        except VersionFailed as failure:
            self._fail(m, r, failure.reason, str(failure))
            return
        r.handle, r.signature, r.platform = handle, handle.signature, handle.runtime.platform
        r.memory = handle.memory_bytes
        if handle.sequences is not None:
            self.sequences.adopt(m.name)
        self._t.set_state(m, r, S.READY, **warmed, memory_bytes=r.memory)

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
        self._t.set_state(m, r, S.FAILED, reason, message)
        for kind, fields in consequences(m, r.version, reason, chosen_before):
            self.events.publish(kind, m.name, **fields)
        forget_if_gone(self._models, m)

    def _cancel_load(self, m: ModelRecord, version: int) -> None:
        r = m.versions[version]
        r.cancelling = True
        task = self._loads.get((m.name, version))
        if task is not None:
            task.cancel()

    # ---- serving and retiring -----------------------------------------------------------
    def _serve(self, m: ModelRecord, version: int) -> None:
        started = self._rollouts.starts(m, version)  # decided before the version is routable
        if m.pending_pin is not None and m.pending_pin.version == version:
            m.pending_pin = None  # the pin took effect
        self._t.set_state(m, m.versions[version], S.SERVING)
        if started:
            self._rollouts.announce(m, m.rollout)
        sync_windows(m)
        self._t.announce_swap(m)

    def _retire(self, m: ModelRecord, version: int) -> None:
        r = m.versions[version]
        self._t.set_state(m, r, S.DRAINING)
        self._t.announce_swap(m)
        task = asyncio.get_running_loop().create_task(self._drain(m, r))
        drains = self._drains.setdefault(m.name, set())
        drains.add(task)
        task.add_done_callback(drains.discard)

    async def _drain(self, m: ModelRecord, r: VersionRecord) -> None:
        stateful = r.handle is not None and r.handle.sequences is not None
        retired = await self.sequences.retire(m, r.handle) if stateful else None
        drained = await drain_and_unload(r.handle, m.settings.drain_timeout, self._unloader)
        r.handle = None
        reason, message, data = unload_report(drained, retired, m.settings.drain_timeout,
                                              self._stopping)  # fmt: skip
        self._t.set_state(m, r, S.UNLOADED, reason, message, **data)
        forget_if_gone(self._models, m)
        if m.name not in self._models:
            self.sequences.forget(m.name)

    # ---- update rate limits -------------------------------------------------------------
    def _limit_updates(self, m: ModelRecord, now: float) -> None:
        decision, wait = limit_updates(m, now, self._load_meter)
        if decision is not None:
            self.events.publish("rate_limit", m.name, version=decision.version,
                                state=decision.decision, reason=decision.reason,
                                data=asdict(decision))  # fmt: skip
        if wait is not None:
            self._queue.at(m.name, now + wait)
