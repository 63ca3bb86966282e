"""Dynamic batching: concurrent requests to one version combined into one backend call.

A :class:`Batcher` belongs to exactly one loaded version (its handle creates it), so a batch
never mixes versions. Requests whose inputs have the same non-batch shapes, dtypes and
requested outputs are queued together; a queue is dispatched when it holds ``max_batch_size``
rows, when it holds exactly one of the ``preferred_batch_sizes``, or ``max_delay`` seconds after
its oldest request arrived — so no request waits longer than the delay. Results are split back
by rows; an error fails every request of that batch. Callers hold their version's lease while
queued, so a swap drains queued requests instead of dropping them.

    batcher = Batcher(runtime.predict, executor, max_batch_size=32, max_delay=0.002)
    outputs = await batcher.submit({"x": x}, None)     # x: [rows, ...]
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from baton.errors import BatonError

__all__ = ["Batcher"]

Predict = Callable[[dict[str, np.ndarray], Sequence[str] | None], dict[str, np.ndarray]]
GroupKey = tuple


@dataclass(eq=False, slots=True)
class _Pending:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future


@dataclass(eq=False, slots=True)
class _Queue:
    outputs: Sequence[str] | None
    items: list[_Pending] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None


class Batcher:
    def __init__(
        self,
        predict: Predict,
        executor: Executor | None,
        *,
        max_batch_size: int,
        max_delay: float,
        preferred_batch_sizes: Sequence[int] = (),
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay
        self._preferred = frozenset(preferred_batch_sizes)
        self._on_batch = on_batch
        self._queues: dict[GroupKey, _Queue] = {}
        self._running: set[asyncio.Task] = set()

    async def submit(
        self, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None
    ) -> dict[str, np.ndarray]:
        """Queue one request (inputs share their first dimension) and await its own rows."""
        loop = asyncio.get_running_loop()
        rows = _rows(inputs)
        if rows is None or rows == 0 or rows >= self.max_batch_size:
            return await loop.run_in_executor(self._executor, self._predict, inputs, outputs)
        key = (
            tuple(outputs) if outputs is not None else None,
            tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(inputs.items())),
        )
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue(outputs)
        pending = _Pending(inputs, rows, loop.create_future())
        queue.items.append(pending)
        queue.rows += rows
        if queue.rows >= self.max_batch_size or queue.rows in self._preferred:
            self._dispatch(key)
        elif queue.timer is None:
            queue.timer = loop.call_later(self.max_delay, self._dispatch, key)
        return await pending.future

    def _dispatch(self, key: GroupKey) -> None:
        queue = self._queues.pop(key, None)
        if queue is None:
            return
        if queue.timer is not None:
            queue.timer.cancel()
        items = queue.items
        while items:
            batch, rows = [], 0
            while items and (not batch or rows + items[0].rows <= self.max_batch_size):
                rows += items[0].rows
                batch.append(items.pop(0))
            task = asyncio.get_running_loop().create_task(self._run(batch, queue.outputs))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Pending], outputs: Sequence[str] | None) -> None:
        loop = asyncio.get_running_loop()
        if len(batch) == 1:
            inputs = batch[0].inputs
        else:
            inputs = {n: np.concatenate([p.inputs[n] for p in batch]) for n in batch[0].inputs}
        total = sum(p.rows for p in batch)
        if self._on_batch is not None:
            self._on_batch(total)
        try:
            result = await loop.run_in_executor(self._executor, self._predict, inputs, outputs)
            bad = [n for n, v in result.items() if v.ndim == 0 or v.shape[0] != total]
            if bad and len(batch) > 1:
                raise BatonError(f"output(s) {bad} lost the batch dimension; cannot split a batch")
        except Exception as exc:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        start = 0
        for p in batch:
            end = start + p.rows
            if not p.future.done():
                p.future.set_result(
                    result if len(batch) == 1 else {n: v[start:end] for n, v in result.items()}
                )
            start = end


def _rows(inputs: dict[str, np.ndarray]) -> int | None:
    """The shared first dimension of all inputs, or ``None`` when they do not share one."""
    sizes = {a.shape[0] if a.ndim else None for a in inputs.values()}
    return sizes.pop() if len(sizes) == 1 else None
