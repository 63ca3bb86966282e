"""Sequences: Triton's sequence protocol and the per-model index of live sequences.

A request belongs to a sequence when its parameters carry a non-zero ``sequence_id`` (an
unsigned 64-bit integer or a string, as tritonclient sends them); ``sequence_start`` begins
the sequence, ``sequence_end`` ends it after this request. A sequence is bound to the version
that served its START and stays there — through canary steps, pins and swaps — until it ends,
idles out, or is *migrated* to the version that replaces its own (``sequence.swap: migrate``).

    control = sequence_control(request.parameters)     # None: not a sequence request
    sequence = index.start(control.id, handle, now) if control.start else index.get(control.id)
    async with sequence.lock:                           # one step of a sequence at a time
        ...  predict on sequence.handle with sequence.state fed in, keep the new state
    if control.end:
        index.end(sequence, ENDED)

The index is per model and outlives serving maps (it lives on the model's record); each
version's state store (:mod:`baton.serving.sequence_state`) counts what lives on it. Everything
here runs on the event loop; nothing is shared with other threads.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from baton.errors import Conflict, InvalidRequest

if TYPE_CHECKING:
    from baton.serving.handle import VersionHandle
    from baton.serving.sequence_state import VersionSequences

__all__ = [
    "CUT",
    "ENDED",
    "IDLE",
    "Migration",
    "Sequence",
    "SequenceControl",
    "SequenceIndex",
    "sequence_control",
]

SequenceId = int | str
MAX_ID_CHARS = 256
#: Ended sequence ids remembered per model, so a late request learns why its sequence is gone.
REMEMBERED = 10_000
# Why a sequence is no longer live (the text completes "sequence 7 of model 'm' ...").
ENDED = "ended (sequence_end)"
IDLE = "was idle for longer than its idle_timeout and was ended"
CUT = "was ended when its version was unloaded (sequence drain_timeout)"


@dataclass(frozen=True, slots=True)
class SequenceControl:
    id: SequenceId
    start: bool
    end: bool


def sequence_control(parameters: Mapping[str, object]) -> SequenceControl | None:
    """The request's sequence parameters, ``None`` when it is not part of a sequence (no
    ``sequence_id``, or Triton's "none" ids ``0`` and ``""``). Raises :class:`InvalidRequest`
    for ids or flags of the wrong type."""
    raw = parameters.get("sequence_id")
    start, end = _flag(parameters, "sequence_start"), _flag(parameters, "sequence_end")
    if raw is None or (type(raw) is int and raw == 0) or raw == "":
        if start or end:
            raise InvalidRequest("sequence_start and sequence_end need a non-zero sequence_id")
        return None
    if type(raw) is int:
        if not 0 < raw < 2**64:
            raise InvalidRequest(f"sequence_id {raw} is not an unsigned 64-bit integer")
    elif isinstance(raw, str):
        if len(raw) > MAX_ID_CHARS:
            raise InvalidRequest(f"a string sequence_id has at most {MAX_ID_CHARS} characters")
    else:
        raise InvalidRequest(
            f"sequence_id must be an unsigned integer or a string, not {type(raw).__name__}"
        )
    return SequenceControl(raw, start, end)


def _flag(parameters: Mapping[str, object], name: str) -> bool:
    value = parameters.get(name, False)
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be true or false, not {value!r}")
    return value


@dataclass(eq=False, slots=True)
class Sequence:
    """One live sequence: the version it is bound to and its state there."""

    id: SequenceId
    handle: VersionHandle
    state: dict[str, np.ndarray]
    last_used: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    gone: str | None = None  # why it is no longer live (set once, by SequenceIndex.end)

    @property
    def store(self) -> VersionSequences:
        store = self.handle.sequences
        assert store is not None
        return store


@dataclass(frozen=True, slots=True)
class Migration:
    """What a swap did to the live sequences of a retired version."""

    moved: dict[int, int]  # target version -> sequences carried there
    stayed: dict[str, int]  # why a sequence stayed on its version -> how many


class SequenceIndex:
    """The live sequences of one model, by id (see the module docstring)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.live: dict[SequenceId, Sequence] = {}
        self._gone: OrderedDict[SequenceId, str] = OrderedDict()
        self._idled: dict[int, int] = {}  # version -> idle ends not yet reported by expire()

    def _name(self, sequence_id: SequenceId) -> str:
        shown = repr(sequence_id) if isinstance(sequence_id, str) else sequence_id
        return f"sequence {shown} of model '{self.model}'"

    def get(self, sequence_id: SequenceId, now: float | None = None) -> Sequence:
        """The live sequence, or :class:`InvalidRequest` saying why there is none. Given
        ``now``, a sequence idle past its ``idle_timeout`` (and not busy) ends here rather than
        at the next sweep."""
        sequence = self.live.get(sequence_id)
        if sequence is not None and now is not None and self._idle(sequence, now):
            self.end(sequence, IDLE)
            sequence = None
        if sequence is not None:
            return sequence
        why = self._gone.get(sequence_id)
        if why is None:
            raise InvalidRequest(
                f"{self._name(sequence_id)} is not live: its first request must carry "
                "sequence_start"
            )
        raise InvalidRequest(f"{self._name(sequence_id)} {why}; start it again with sequence_start")

    def check(self, sequence: Sequence) -> None:
        """Raise :class:`InvalidRequest` if ``sequence`` is no longer live (it ended while a
        request waited for it)."""
        if sequence.gone is not None:
            raise InvalidRequest(
                f"{self._name(sequence.id)} {sequence.gone}; start it again with sequence_start"
            )

    def start(self, sequence_id: SequenceId, handle: VersionHandle, now: float) -> Sequence:
        """Begin a sequence on ``handle``'s version from its initial state. Raises
        :class:`Conflict` for a live id, :class:`InvalidRequest` for a version without
        sequences and :class:`TooManyRequests` when the version's store is full."""
        live = self.live.get(sequence_id)
        if live is not None and self._idle(live, now):
            self.end(live, IDLE)
            live = None
        if live is not None:
            raise Conflict(
                f"{self._name(sequence_id)} is already live (on version {live.handle.version}); "
                "end it with sequence_end before starting it again"
            )
        store = handle.sequences
        if store is None:
            raise InvalidRequest(
                f"model '{self.model}' version {handle.version} was loaded without sequence "
                "settings and keeps no sequences"
            )
        store.admit()
        sequence = Sequence(sequence_id, handle, store.initial(), now)
        self.live[sequence_id] = sequence
        self._gone.pop(sequence_id, None)
        return sequence

    def end(self, sequence: Sequence, why: str) -> None:
        """The sequence is no longer live (idempotent); later requests for its id are told
        ``why``."""
        if sequence.gone is not None:
            return
        sequence.gone = why
        sequence.store.release()
        if why == IDLE:
            version = sequence.handle.version
            self._idled[version] = self._idled.get(version, 0) + 1
        if self.live.get(sequence.id) is sequence:
            del self.live[sequence.id]
        self._gone[sequence.id] = why
        if len(self._gone) > REMEMBERED:
            self._gone.popitem(last=False)

    def on(self, handle: VersionHandle) -> list[Sequence]:
        return [s for s in self.live.values() if s.handle is handle]

    @staticmethod
    def _idle(sequence: Sequence, now: float) -> bool:
        """Past its idle timeout, with no request under way."""
        timeout = sequence.store.settings.idle_timeout
        return now - sequence.last_used > timeout and not sequence.lock.locked()

    def expire(self, now: float) -> dict[int, int]:
        """End sequences idle for longer than their version's ``idle_timeout`` (none with a
        request under way); returns version -> how many ended idle since the last call (those
        a request or a START found idle first included)."""
        for sequence in list(self.live.values()):
            if self._idle(sequence, now):
                self.end(sequence, IDLE)
        ended, self._idled = self._idled, {}
        return ended

    def cut(self, handle: VersionHandle) -> int:
        """End every sequence still on ``handle`` (its version is being unloaded)."""
        sequences = self.on(handle)
        for sequence in sequences:
            self.end(sequence, CUT)
        return len(sequences)

    async def migrate(
        self,
        handle: VersionHandle,
        target_for: Callable[[Sequence], VersionHandle | None],
        convert: Callable[..., object],
        timeout: float | None = None,
    ) -> Migration:
        """Carry every live sequence of ``handle`` to ``target_for(sequence)``, all at once:
        each waits for its own request under way (not for the others'), then
        ``await convert(target_store.convert, state, source)`` builds its new state. A sequence
        without a target, whose state cannot be carried, whose target retired meanwhile, or
        not carried within ``timeout`` seconds (the reason is counted) stays on ``handle`` to
        drain."""
        moved: dict[int, int] = {}
        stayed: dict[str, int] = {}

        def stay(why: str) -> None:
            stayed[why] = stayed.get(why, 0) + 1

        async def carry(sequence: Sequence) -> None:
            async with sequence.lock:
                if sequence.gone is not None or sequence.handle is not handle:
                    return
                target = target_for(sequence)
                store = target.sequences if target is not None else None
                if target is None or target is handle or store is None:
                    return stay("no version with sequences to migrate to")
                try:
                    state = await convert(store.convert, sequence.state, sequence.store)
                    if target.closed:  # it retired while the state was converted
                        return stay(f"version {target.version} retired during the migration")
                    store.admit()
                except Exception as exc:  # the reason is reported; the sequence stays
                    return stay(str(exc))
                sequence.store.release()
                sequence.handle, sequence.state = target, state
                moved[target.version] = moved.get(target.version, 0) + 1

        tasks = [asyncio.ensure_future(carry(sequence)) for sequence in self.on(handle)]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for task in late:
                task.cancel()
                stay("not migrated within the sequence drain_timeout")
            if late:
                await asyncio.wait(late)
        return Migration(moved, stayed)
