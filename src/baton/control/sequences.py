"""The manager's side of stateful models: every model's index of live sequences, what happens
to them when a version retires, and the idle sweep.

One :class:`Sequences` per manager. Each stateful model's :class:`SequenceIndex` is created
when its first stateful version loads and kept until the model is forgotten; the serving maps
route with it (they share the dict, :attr:`Sequences.indexes`). When a stateful version
retires, :meth:`Sequences.retire` migrates or waits out its sequences
(:func:`baton.control.drain.retire_sequences`) and says what happened in a ``sequences`` event;
from the moment the server stops, the rest are ended at once. Migration hooks run on a thread of
their own, so a slow hook delays no unload.

    sequences = Sequences(events, lambda: manager.serving_map, lambda: manager.stopping)
    retired = await sequences.retire(record, handle)    # before the handle drains and unloads
    live = sequences.sweep()                            # once a second: idle ends, gauges
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from baton.control.drain import SequencesRetired, retire_sequences
from baton.control.records import ModelRecord
from baton.errors import BatonError
from baton.observe.events import EventBus
from baton.serving.handle import VersionHandle
from baton.serving.routing import choose_handle
from baton.serving.sequences import Sequence, SequenceIndex
from baton.serving.serving_map import ServingMap
from baton.serving.split import key_point

__all__ = ["Sequences"]


class Sequences:
    def __init__(
        self,
        events: EventBus,
        serving_map: Callable[[], ServingMap],
        stopping: Callable[[], bool],
    ) -> None:
        self.events = events
        self._serving_map = serving_map
        self._stopping = stopping
        #: model -> its live sequences (shared with every serving map the manager builds)
        self.indexes: dict[str, SequenceIndex] = {}
        self._hooks = ThreadPoolExecutor(1, thread_name_prefix="baton-migrate")

    def get(self, model: str) -> SequenceIndex | None:
        return self.indexes.get(model)

    def adopt(self, model: str) -> SequenceIndex:
        """The model's index, created when its first stateful version loads."""
        return self.indexes.setdefault(model, SequenceIndex(model))

    def forget(self, model: str) -> None:
        self.indexes.pop(model, None)

    def shutdown(self) -> None:
        self._hooks.shutdown(wait=False, cancel_futures=True)  # a stuck hook holds no one up

    async def retire(self, m: ModelRecord, handle: VersionHandle) -> SequencesRetired:
        """Migrate or wait out the live sequences of a retired stateful version (from the moment
        the server starts stopping: end them, whenever the version retired), and say what
        happened in a ``sequences`` event."""
        assert handle.sequences is not None
        handle.close()
        settings = m.settings.sequence or handle.sequences.settings
        if self._stopping():
            settings = settings.model_copy(update={"swap": "drain", "drain_timeout": 0.0})

        def target_for(sequence: Sequence) -> VersionHandle | None:
            route = self._serving_map().get(m.name)
            if route is None:
                return None
            point = key_point(str(sequence.id)) if route.canary else 0.0
            try:
                return choose_handle(route, None, point)
            except BatonError:
                return None

        retired = await retire_sequences(self.adopt(m.name), handle, settings, target_for,
                                         self._hooks, self._stopping)  # fmt: skip
        if retired.live:
            migration = retired.migration
            self.events.publish(
                "sequences", m.name, version=handle.version, state=settings.swap,
                message=(f"{retired.live} live sequences at retirement; "
                         f"{retired.cut} ended at the sequence drain timeout"),
                data={"live": retired.live, "cut": retired.cut,
                      "seconds": round(retired.seconds, 3),
                      "migrated": migration.moved if migration else {},
                      "stayed": migration.stayed if migration else {}},
            )  # fmt: skip
        return retired

    def sweep(self) -> dict[tuple[str, int], tuple[int, int]]:
        """End sequences idle past their ``idle_timeout`` (one ``sequences`` event per version
        that lost some); returns (model, version) -> (live sequences, bytes of their state).
        The server calls it about once a second."""
        now = time.monotonic()
        live: dict[tuple[str, int], tuple[int, int]] = {}
        for name, index in list(self.indexes.items()):
            for version, count in index.expire(now).items():
                self.events.publish("sequences", name, version=version, state="idle_timeout",
                                    message=f"{count} idle sequences ended",
                                    data={"expired": count})  # fmt: skip
            for sequence in index.live.values():
                store = sequence.store
                live[(name, store.version)] = (store.live, store.bytes)
        return live
