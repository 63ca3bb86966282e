"""Retiring a stateful version: its live sequences drain, are cut at the sequence drain
timeout, or migrate to the version that replaces it; a closed handle still leases to them."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from baton.control.drain import drain_and_unload, retire_sequences
from baton.errors import InvalidRequest
from baton.runtimes.fake import FakeRuntime
from baton.serving.handle import HandleClosed, VersionHandle
from baton.serving.sequence_state import VersionSequences
from baton.serving.sequences import CUT, ENDED, SequenceIndex
from baton.settings import SequenceSettings, StateSettings
from baton.types import Signature, TensorSpec

W = 4
SIG = Signature(
    (TensorSpec("x", "FP32", (-1, W)), TensorSpec("h_in", "FP32", (-1, W))),
    (TensorSpec("y", "FP32", (-1, W)), TensorSpec("h_out", "FP32", (-1, W))),
)
STATE = (StateSettings(input="h_in", output="h_out", shape=(W,)),)
NO_TARGET = "no version with sequences to migrate to"


def settings(**kw) -> SequenceSettings:
    return SequenceSettings(state=STATE, **kw)


def make_handle(version: int, *, max_sequences: int = 100) -> VersionHandle:
    runtime = FakeRuntime(float(version), signature=SIG)
    runtime.load()
    store = VersionSequences.build("m", version, settings(max_sequences=max_sequences), SIG, None)
    return VersionHandle("m", version, runtime, SIG, sequences=store)


@pytest.fixture
def executor():
    pool = ThreadPoolExecutor(2)
    yield pool
    pool.shutdown(wait=True)


def end_later(index: SequenceIndex, ids, delay: float) -> asyncio.Task:
    async def run():
        await asyncio.sleep(delay)
        for sequence_id in ids:
            index.end(index.get(sequence_id), ENDED)

    return asyncio.create_task(run())


# ---- drain mode --------------------------------------------------------------------------


async def test_drain_waits_for_the_sequences_to_end(executor):
    index, old = SequenceIndex("m"), make_handle(1)
    for i in (1, 2):
        index.start(i, old, 0.0)
    old.close()
    ender = end_later(index, (1, 2), 0.15)
    retired = await retire_sequences(
        index, old, settings(swap="drain", drain_timeout=5.0), lambda s: None, executor
    )
    await ender
    assert (retired.live, retired.cut, retired.migration) == (2, 0, None)
    assert 0.1 <= retired.seconds < 2.0  # it waited for them
    assert old.sequences.live == 0 and index.live == {}
    with pytest.raises(InvalidRequest, match=r"ended \(sequence_end\)"):
        index.get(1)


async def test_drain_does_not_migrate_even_with_a_target(executor):
    index, old, new = SequenceIndex("m"), make_handle(1), make_handle(2)
    sequence = index.start(1, old, 0.0)
    ender = end_later(index, (1,), 0.05)
    retired = await retire_sequences(
        index, old, settings(swap="drain", drain_timeout=5.0), lambda s: new, executor
    )
    await ender
    assert retired.migration is None and retired.cut == 0
    assert sequence.handle is old and new.sequences.live == 0


@pytest.mark.parametrize("swap", ["drain", "migrate"])
async def test_nothing_to_retire_returns_at_once(executor, swap):
    index, old, other = SequenceIndex("m"), make_handle(1), make_handle(2)
    elsewhere = index.start(1, other, 0.0)  # on another version: not this one's to wait for
    retired = await retire_sequences(
        index, old, settings(swap=swap, drain_timeout=5.0), lambda s: other, executor
    )
    assert (retired.live, retired.cut, retired.migration) == (0, 0, None)
    assert retired.seconds < 0.2
    assert elsewhere.gone is None and other.sequences.live == 1


@pytest.mark.parametrize(("drain_timeout", "ended_first"), [(0.15, (1,)), (0.0, ())])
async def test_drain_timeout_cuts_the_rest(executor, drain_timeout, ended_first):
    index, old = SequenceIndex("m"), make_handle(1)
    sequences = [index.start(i, old, 0.0) for i in (1, 2, 3)]
    ender = end_later(index, ended_first, 0.02) if ended_first else None
    retired = await retire_sequences(
        index, old, settings(drain_timeout=drain_timeout), lambda s: None, executor
    )
    if ender is not None:
        await ender
    assert retired.live == 3 and retired.cut == 3 - len(ended_first)
    assert drain_timeout <= retired.seconds < drain_timeout + 1.0
    assert old.sequences.live == 0 and index.live == {}
    for sequence in sequences:
        expected = ENDED if sequence.id in ended_first else CUT
        assert sequence.gone == expected
        with pytest.raises(InvalidRequest) as caught:
            index.get(sequence.id)
        assert expected in str(caught.value)
    with pytest.raises(InvalidRequest, match="was ended when its version was unloaded"):
        index.get(3)


async def test_drain_timeout_leaves_other_versions_sequences(executor):
    index, old, new = SequenceIndex("m"), make_handle(1), make_handle(2)
    index.start(1, old, 0.0)
    survivor = index.start(2, new, 0.0)
    retired = await retire_sequences(
        index, old, settings(drain_timeout=0.0), lambda s: None, executor
    )
    assert retired.cut == 1
    assert survivor.gone is None and index.get(2) is survivor and new.sequences.live == 1


# ---- migrate mode ------------------------------------------------------------------------


async def test_migrate_moves_the_sequences_to_the_target(executor):
    index, old, new = SequenceIndex("m"), make_handle(1), make_handle(2)
    sequences = [index.start(i, old, 0.0) for i in (1, 2)]
    for sequence in sequences:
        sequence.state["h_in"][:] = sequence.id
    old.close()
    retired = await retire_sequences(
        index, old, settings(swap="migrate", drain_timeout=5.0), lambda s: new, executor
    )
    assert retired.live == 2 and retired.cut == 0
    assert retired.migration.moved == {2: 2} and retired.migration.stayed == {}
    assert retired.seconds < 1.0  # nothing left to wait for
    for sequence in sequences:
        assert sequence.handle is new and index.get(sequence.id) is sequence
        np.testing.assert_array_equal(sequence.state["h_in"], np.full(W, sequence.id))
    assert old.sequences.live == 0 and new.sequences.live == 2


async def test_migration_converts_on_the_executor(executor):
    index, old, new = SequenceIndex("m"), make_handle(1), make_handle(2)
    index.start(1, old, 0.0)
    threads = []
    by_name = new.sequences.convert

    def recording(state, source):
        threads.append(threading.get_ident())
        return by_name(state, source)

    new.sequences.convert = recording
    retired = await retire_sequences(
        index, old, settings(swap="migrate", drain_timeout=5.0), lambda s: new, executor
    )
    assert retired.migration.moved == {2: 1}
    assert len(threads) == 1 and threads[0] != threading.get_ident()


async def test_migrate_without_a_target_drains_then_cuts(executor):
    index, old = SequenceIndex("m"), make_handle(1)
    for i in (1, 2):
        index.start(i, old, 0.0)
    ender = end_later(index, (1,), 0.02)
    retired = await retire_sequences(
        index, old, settings(swap="migrate", drain_timeout=0.15), lambda s: None, executor
    )
    await ender
    assert retired.migration.moved == {} and retired.migration.stayed == {NO_TARGET: 2}
    assert retired.live == 2 and retired.cut == 1
    with pytest.raises(InvalidRequest, match="was ended when its version was unloaded"):
        index.get(2)
    assert old.sequences.live == 0


async def test_migrate_to_a_full_target_moves_what_fits_and_cuts_the_rest(executor):
    index, old, new = SequenceIndex("m"), make_handle(1), make_handle(2, max_sequences=1)
    for i in (1, 2):
        index.start(i, old, 0.0)
    retired = await retire_sequences(
        index, old, settings(swap="migrate", drain_timeout=0.0), lambda s: new, executor
    )
    assert retired.migration.moved == {2: 1} and sum(retired.migration.stayed.values()) == 1
    assert retired.cut == 1
    assert [s.id for s in index.live.values()] == [1]
    assert index.get(1).handle is new
    assert old.sequences.live == 0 and new.sequences.live == 1


# ---- leases for sequences on a closed handle ---------------------------------------------


def test_a_closed_handle_leases_to_sequences_until_end_sequences():
    handle = make_handle(1)
    handle.acquire(sequence=True)
    handle.close()
    with pytest.raises(HandleClosed):
        handle.acquire()
    with pytest.raises(HandleClosed), handle.lease():
        pass
    handle.acquire(sequence=True)  # a sequence bound to this version still gets through
    assert handle.inflight == 2
    handle.end_sequences()
    with pytest.raises(HandleClosed, match="m version 1 is unloaded"):
        handle.acquire(sequence=True)
    with pytest.raises(HandleClosed):
        handle.acquire()
    handle.release()
    handle.release()  # leases taken before still return
    assert handle.inflight == 0


def test_end_sequences_on_an_open_handle_refuses_everything():
    handle = make_handle(1)
    handle.end_sequences()
    for sequence in (False, True):
        with pytest.raises(HandleClosed):
            handle.acquire(sequence=sequence)
    assert handle.inflight == 0


async def test_drain_and_unload_ends_sequence_leases(executor):
    handle = make_handle(1)
    handle.close()
    handle.acquire(sequence=True)
    handle.release()
    drained = await drain_and_unload(handle, 1.0, executor)
    assert not drained.forced and handle.runtime.unloaded
    with pytest.raises(HandleClosed):
        handle.acquire(sequence=True)


# ---- what the review found: races, hangs, shutdown ---------------------------------------


async def test_a_target_that_retires_while_the_state_converts_keeps_the_sequence_home():
    index, old, new = SequenceIndex("m"), make_handle(1), make_handle(2)
    index.start(1, old, 0.0)

    async def convert(fn, *args):
        new.close()  # a rollback retired the target meanwhile
        return fn(*args)

    migration = await index.migrate(old, lambda s: new, convert)
    assert migration.moved == {} and migration.stayed == {
        "version 2 retired during the migration": 1
    }
    assert index.get(1).handle is old and (old.sequences.live, new.sequences.live) == (1, 0)


async def test_a_hook_that_hangs_is_given_up_after_the_timeout():
    index, old, new = SequenceIndex("m"), make_handle(1), make_handle(2)
    index.start(1, old, 0.0)
    never = asyncio.Event()

    async def convert(fn, *args):
        await never.wait()

    migration = await index.migrate(old, lambda s: new, convert, timeout=0.05)
    assert migration.stayed == {"not migrated within the sequence drain_timeout": 1}
    sequence = index.get(1)
    assert sequence.handle is old and not sequence.lock.locked()  # its requests go on


async def test_shutdown_stops_the_wait_and_cuts_what_is_left(executor):
    index, old = SequenceIndex("m"), make_handle(1)
    index.start(1, old, 0.0)
    old.close()
    stopping = threading.Event()
    asyncio.get_running_loop().call_later(0.1, stopping.set)
    retired = await retire_sequences(
        index, old, settings(swap="drain", drain_timeout=300.0), lambda s: None, executor,
        stopping.is_set,
    )  # fmt: skip
    assert retired.cut == 1 and retired.seconds < 2.0
    with pytest.raises(InvalidRequest, match="was ended when its version was unloaded"):
        index.get(1)


def test_a_start_on_an_id_idle_past_its_timeout_begins_afresh():
    index, handle = SequenceIndex("m"), make_handle(1)
    first = index.start(1, handle, 0.0)
    second = index.start(1, handle, 1000.0)  # idle_timeout is 60 s; the sweep has not run yet
    assert second is not first and first.gone is not None
    assert index.live[1] is second and handle.sequences.live == 1
