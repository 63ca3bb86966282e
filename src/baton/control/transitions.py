"""State changes and what the outside world sees of them, in race-free order.

:class:`Transitions` is the only place a version changes state (legal transitions only, one
``state`` event each), the only place the serving map is replaced, and the only place a change
of a model's default version is announced (a ``swap`` event). The order guarantees readers
never see an event before the routing it describes: a version becoming SERVING is routable
before its event goes out; one leaving SERVING is announced first; a new default is routable
before its ``swap`` event.

    t = Transitions(models, events, clock, on_change=queue.mark)
    t.set_state(m, r, VersionState.SERVING)
    dataplane_reads(t.serving_map)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from baton.control.lifecycle import VersionState, check_transition
from baton.control.records import ModelRecord, VersionRecord
from baton.control.routes import serving_map_of
from baton.observe.events import EventBus
from baton.serving.serving_map import ServingMap

if TYPE_CHECKING:
    from baton.serving.sequences import SequenceIndex

__all__ = ["HISTORY", "Transitions"]

S = VersionState
HISTORY = 100  # default versions remembered per model, for rollback


class Transitions:
    def __init__(
        self,
        models: dict[str, ModelRecord],
        events: EventBus,
        clock: Callable[[], float],
        on_change: Callable[[str], None],
        on_map: Callable[[ServingMap], None] | None = None,
        sequences: Mapping[str, SequenceIndex] | None = None,
    ) -> None:
        self.serving_map: ServingMap = ServingMap.empty()
        self._sequences = sequences if sequences is not None else {}
        self._on_map = on_map
        self.stale = True  # something may route differently: rebuild at the next publish
        self._models = models
        self._events = events
        self._clock = clock
        self._on_change = on_change

    def set_state(
        self,
        m: ModelRecord,
        r: VersionRecord,
        state: VersionState,
        reason: str | None = None,
        message: str | None = None,
        **data,
    ) -> None:
        """Move ``r`` to ``state`` (raises ``ValueError`` for an illegal transition)."""
        check_transition(r.state, state)
        was_serving = r.state is S.SERVING
        r.state, r.since = state, self._clock()
        if state in (S.FAILED, S.UNLOADED):
            r.reason, r.message = reason, message
        elif state is S.DISCOVERED:
            r.reason = r.message = None
        if state is S.SERVING:
            self.publish_map(force=True)
        self._events.publish("state", m.name, version=r.version, state=state.value,
                             reason=reason, message=message, data=data)  # fmt: skip
        if was_serving:
            self.publish_map(force=True)
        self._on_change(m.name)

    def publish_map(self, force: bool = False) -> None:
        """Replace the serving map (one assignment) if it may be out of date, or ``force``;
        ``on_map`` sees every new map before anything is announced (worker processes switch
        to it there)."""
        if force or self.stale:
            self.serving_map = serving_map_of(self._models.values(), self._sequences)
            self.stale = False
            if self._on_map is not None:
                self._on_map(self.serving_map)

    def announce_swap(self, m: ModelRecord) -> None:
        """A ``swap`` event when the model's default version differs from the one last
        announced (whatever changed it: a serve, a retirement, a pin, a rollout step)."""
        after, before = m.default_version(), m.announced
        if after == before:
            return
        m.announced = after
        if after is not None:
            m.history = [*m.history[-(HISTORY - 1) :], after]
        m.updates = m.updates.swapped(self._clock())
        self.publish_map(force=True)  # routable before it is announced
        self._events.publish("swap", m.name, version=after, data={"from": before})
