"""Running a model's rollout on the manager's clock: start, gate checks, every change, events.

The decisions are pure (:mod:`baton.control.rollouts`, :mod:`baton.rollout.controller`); this
applies them to a model's record. :meth:`RolloutDriver.apply` is the one path every rollout
change takes — gate checks, operators, restored state: it updates the record and the live
windows, republishes the serving map, announces the change (a ``rollout`` event, and a ``swap``
if the default moved) and hands the model back to the reconcile loop.

    driver = RolloutDriver(events, transitions, queue, clock, period=1.0, changed=manager_mark)
    if driver.starts(m, version): ...          # as ``version`` becomes SERVING
    driver.check(m, now)                       # each reconcile of ``m``: gates when due
    driver.apply(m, controller.operate(m.rollout, "pause", now), operator="pause")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

from baton.control.queue import ReconcileQueue
from baton.control.records import ModelRecord
from baton.control.rollouts import check_when_due, describe, finish, rollout_on_serve, sync_windows
from baton.control.transitions import Transitions
from baton.observe.events import EventBus
from baton.rollout.schedule import Rollout, RolloutStatus

__all__ = ["RolloutDriver"]


class RolloutDriver:
    def __init__(
        self, events: EventBus, transitions: Transitions, queue: ReconcileQueue,
        clock: Callable[[], float], period: float, changed: Callable[[str], None],
    ) -> None:  # fmt: skip
        self.events, self._t, self._queue = events, transitions, queue
        self._clock, self.period, self._changed = clock, period, changed

    def starts(self, m: ModelRecord, version: int) -> bool:
        """Start the rollout that ``version`` becoming (or being) SERVING begins, if any (the
        caller announces it once the version is routable)."""
        started = rollout_on_serve(m, version, m.default_version(), self._clock())
        if started is not None:
            m.rollout, m.rollout_gates = started
            m.rollout_request, m.rollout_due = None, None
        return started is not None

    def start_if_serving(self, m: ModelRecord, candidate: int) -> None:
        """An operator's rollout to a version that already serves starts at once."""
        if candidate in m.serving() and self.starts(m, candidate):
            sync_windows(m)
            self._t.publish_map(force=True)
            self.announce(m, m.rollout)

    def check(self, m: ModelRecord, now: float) -> None:
        """Evaluate a running rollout's gates when due (every ``period`` seconds), and ask the
        queue to reconcile ``m`` when the next check is due."""
        rollout = m.rollout
        step = check_when_due(m, now, self.period)
        if step is not None and step.rollout != rollout:
            self.apply(m, step.rollout, verdict=asdict(step.verdict),
                       failed_gates=list(step.verdict.gates))  # fmt: skip
        if m.rollout is not None and m.rollout_due is not None:
            self._queue.at(m.name, m.rollout_due)

    def apply(self, m: ModelRecord, rollout: Rollout, **data) -> None:
        """Adopt ``rollout`` as the model's rollout (finishing it if it ended) and announce it."""
        old = m.rollout
        new_step = old is None or rollout.step != old.step or rollout.status != old.status
        if rollout.finished:
            finish(m, rollout)
        else:
            m.rollout = rollout
            if rollout.status is not RolloutStatus.RUNNING:
                m.rollout_due = None
        sync_windows(m, reset=new_step)
        self._t.publish_map(force=True)
        self.announce(m, rollout, **data)
        self._t.announce_swap(m)
        self._changed(m.name)

    def announce(self, m: ModelRecord, rollout: Rollout, **data) -> None:
        """The ``rollout`` event: the rollout's state, plan and gates (and ``data``)."""
        self.events.publish(
            "rollout", m.name, version=rollout.candidate, state=rollout.status.value,
            reason=rollout.reason, data={**describe(rollout, m.rollout_gates), **data},
        )  # fmt: skip
