"""The sequence protocol's parameters and the per-model index of live sequences."""

import asyncio

import numpy as np
import pytest

from baton.errors import Conflict, InvalidRequest, TooManyRequests
from baton.runtimes.fake import FakeRuntime
from baton.serving import sequences as sequences_module
from baton.serving.handle import VersionHandle
from baton.serving.sequence_state import VersionSequences
from baton.serving.sequences import (
    CUT,
    ENDED,
    IDLE,
    MAX_ID_CHARS,
    SequenceControl,
    SequenceIndex,
    sequence_control,
)
from baton.settings import SequenceSettings, StateSettings
from baton.types import Signature, TensorSpec

W = 4
NO_TARGET = "no version with sequences to migrate to"


def signature(width: int = W, dtype: str = "FP32") -> Signature:
    return Signature(
        (TensorSpec("x", "FP32", (-1, W)), TensorSpec("h_in", dtype, (-1, width))),
        (TensorSpec("y", "FP32", (-1, W)), TensorSpec("h_out", dtype, (-1, width))),
    )


def make_handle(
    version: int = 1, *, stateful: bool = True, width: int = W, dtype: str = "FP32", **settings
) -> VersionHandle:
    """A real handle on a loaded fake runtime, with a real state store built from its
    signature unless ``stateful`` is false."""
    sig = signature(width, dtype)
    runtime = FakeRuntime(float(version), signature=sig)
    runtime.load()
    store = None
    if stateful:
        state = StateSettings(input="h_in", output="h_out", dtype=dtype, shape=(width,))
        sequence_settings = SequenceSettings(state=(state,), **settings)
        store = VersionSequences.build("m", version, sequence_settings, sig, None)
    return VersionHandle("m", version, runtime, sig, sequences=store)


async def direct(fn, *args):
    """The ``convert`` callable of SequenceIndex.migrate, without an executor."""
    return fn(*args)


# ---- sequence_control --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({}, None),
        ({"priority": 3}, None),
        ({"sequence_id": 0}, None),
        ({"sequence_id": ""}, None),
        ({"sequence_id": 0, "sequence_start": False, "sequence_end": False}, None),
        ({"sequence_id": 7}, SequenceControl(7, False, False)),
        ({"sequence_id": 7, "sequence_start": True}, SequenceControl(7, True, False)),
        ({"sequence_id": 7, "sequence_end": True}, SequenceControl(7, False, True)),
        (
            {"sequence_id": 7, "sequence_start": True, "sequence_end": True},
            SequenceControl(7, True, True),
        ),
        ({"sequence_id": 1}, SequenceControl(1, False, False)),
        ({"sequence_id": 2**64 - 1}, SequenceControl(2**64 - 1, False, False)),
        ({"sequence_id": "abc", "sequence_start": True}, SequenceControl("abc", True, False)),
        ({"sequence_id": "0"}, SequenceControl("0", False, False)),  # a string id, not "none"
        (
            {"sequence_id": "x" * MAX_ID_CHARS},
            SequenceControl("x" * MAX_ID_CHARS, False, False),
        ),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_sequence_control_accepts(parameters, expected):
    assert sequence_control(parameters) == expected


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"sequence_id": "x" * (MAX_ID_CHARS + 1)}, f"at most {MAX_ID_CHARS} characters"),
        ({"sequence_id": True}, "not bool"),
        ({"sequence_id": False}, "not bool"),
        ({"sequence_id": 1.0}, "not float"),
        ({"sequence_id": 0.0}, "not float"),
        ({"sequence_id": [7]}, "not list"),
        ({"sequence_id": b"7"}, "not bytes"),
        ({"sequence_id": -1}, "-1 is not an unsigned 64-bit integer"),
        ({"sequence_id": 2**64}, f"{2**64} is not an unsigned 64-bit integer"),
        ({"sequence_start": True}, "need a non-zero sequence_id"),
        ({"sequence_end": True}, "need a non-zero sequence_id"),
        ({"sequence_id": 0, "sequence_start": True}, "need a non-zero sequence_id"),
        ({"sequence_id": "", "sequence_end": True}, "need a non-zero sequence_id"),
        ({"sequence_id": 7, "sequence_start": 1}, "sequence_start must be true or false"),
        ({"sequence_id": 7, "sequence_start": "true"}, "sequence_start must be true or false"),
        ({"sequence_id": 7, "sequence_end": 0}, "sequence_end must be true or false"),
        ({"sequence_start": "yes"}, "sequence_start must be true or false"),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_sequence_control_refuses(parameters, message):
    with pytest.raises(InvalidRequest, match=message) as caught:
        sequence_control(parameters)
    assert caught.value.http_status == 400


# ---- start / get / end -------------------------------------------------------------------


def test_start_get_end():
    index, handle = SequenceIndex("m"), make_handle()
    store = handle.sequences
    sequence = index.start(7, handle, now=10.0)
    assert sequence.handle is handle and sequence.id == 7 and sequence.last_used == 10.0
    assert sequence.gone is None and sequence.store is store
    np.testing.assert_array_equal(sequence.state["h_in"], np.zeros(W, np.float32))
    assert index.get(7) is sequence
    assert index.live == {7: sequence} and index.on(handle) == [sequence]
    assert store.live == 1

    index.end(sequence, ENDED)
    assert sequence.gone == ENDED
    assert index.live == {} and index.on(handle) == []
    assert store.live == 0
    index.end(sequence, CUT)  # idempotent: counted once, the first reason stays
    assert store.live == 0 and sequence.gone == ENDED


def test_each_sequence_starts_from_its_own_copy_of_the_initial_state():
    index, handle = SequenceIndex("m"), make_handle()
    a, b = index.start(1, handle, 0.0), index.start(2, handle, 0.0)
    a.state["h_in"] += 5
    np.testing.assert_array_equal(b.state["h_in"], np.zeros(W, np.float32))
    np.testing.assert_array_equal(index.start(3, handle, 0.0).state["h_in"], np.zeros(W))


def test_int_and_string_ids_are_different_sequences():
    index, handle = SequenceIndex("m"), make_handle()
    number, text = index.start(5, handle, 0.0), index.start("5", handle, 0.0)
    assert number is not text
    assert index.get(5) is number and index.get("5") is text
    assert handle.sequences.live == 2


@pytest.mark.parametrize("sequence_id", [7, "abc"])
def test_start_on_a_live_id_is_a_conflict(sequence_id):
    index, h1, h2 = SequenceIndex("m"), make_handle(1), make_handle(2)
    first = index.start(sequence_id, h1, 0.0)
    with pytest.raises(Conflict, match=r"is already live \(on version 1\)"):
        index.start(sequence_id, h2, 1.0)
    assert index.get(sequence_id) is first
    assert h1.sequences.live == 1 and h2.sequences.live == 0


def test_start_on_a_version_without_sequences():
    index, handle = SequenceIndex("m"), make_handle(3, stateful=False)
    with pytest.raises(InvalidRequest, match="version 3 was loaded without sequence settings"):
        index.start(7, handle, 0.0)
    assert index.live == {}


def test_start_beyond_max_sequences_is_refused_and_leaves_nothing():
    index, handle = SequenceIndex("m"), make_handle(max_sequences=2)
    index.start(1, handle, 0.0)
    index.start(2, handle, 0.0)
    with pytest.raises(TooManyRequests, match="holds 2 live sequences"):
        index.start(3, handle, 0.0)
    assert set(index.live) == {1, 2} and handle.sequences.live == 2
    with pytest.raises(InvalidRequest, match="is not live"):
        index.get(3)
    index.end(index.get(1), ENDED)
    index.start(3, handle, 0.0)  # room again
    assert handle.sequences.live == 2


@pytest.mark.parametrize(
    ("sequence_id", "shown"), [(7, "sequence 7 of model 'm'"), ("ab", "sequence 'ab' of model 'm'")]
)
def test_unknown_id_says_its_first_request_needs_start(sequence_id, shown):
    index = SequenceIndex("m")
    with pytest.raises(InvalidRequest) as caught:
        index.get(sequence_id)
    assert str(caught.value) == f"{shown} is not live: its first request must carry sequence_start"


def _end(index: SequenceIndex, handle: VersionHandle, how: str) -> None:
    sequence = index.get(7)
    if how == "end":
        index.end(sequence, ENDED)
    elif how == "expire":
        assert index.expire(now=1_000.0) == {1: 1}
    else:
        assert index.cut(handle) == 1


@pytest.mark.parametrize(
    ("how", "why", "words"),
    [
        ("end", ENDED, "ended (sequence_end)"),
        ("expire", IDLE, "was idle for longer than its idle_timeout"),
        ("cut", CUT, "was ended when its version was unloaded (sequence drain_timeout)"),
    ],
)
def test_a_gone_id_says_why(how, why, words):
    index, handle = SequenceIndex("m"), make_handle(idle_timeout=1.0)
    sequence = index.start(7, handle, 0.0)
    _end(index, handle, how)
    expected = f"sequence 7 of model 'm' {why}; start it again with sequence_start"
    assert words in expected
    for ask in (lambda: index.get(7), lambda: index.check(sequence)):
        with pytest.raises(InvalidRequest) as caught:
            ask()
        assert str(caught.value) == expected
    assert sequence.gone == why and handle.sequences.live == 0


def test_check_passes_for_a_live_sequence():
    index, handle = SequenceIndex("m"), make_handle()
    sequence = index.start(7, handle, 0.0)
    index.check(sequence)  # no error


def test_check_on_an_ended_sequence_whose_id_was_started_again():
    index, handle = SequenceIndex("m"), make_handle()
    old = index.start(7, handle, 0.0)
    index.end(old, ENDED)
    new = index.start(7, handle, 1.0)
    with pytest.raises(InvalidRequest, match=r"ended \(sequence_end\)"):
        index.check(old)
    index.check(new)
    assert index.get(7) is new
    index.end(old, CUT)  # a stale end of the old one does not touch the new one
    assert index.get(7) is new and handle.sequences.live == 1


def test_a_restarted_id_is_told_why_its_latest_run_ended():
    index, handle = SequenceIndex("m"), make_handle()
    index.end(index.start(7, handle, 0.0), ENDED)
    index.end(index.start(7, handle, 0.0), ENDED)  # gone again, reason recorded again
    with pytest.raises(InvalidRequest, match=r"ended \(sequence_end\)"):
        index.get(7)
    index.start(7, handle, 0.0)
    index.end(index.get(7), CUT)
    with pytest.raises(InvalidRequest, match="was ended when its version was unloaded"):
        index.get(7)


def test_only_the_newest_ended_ids_are_remembered(monkeypatch):
    monkeypatch.setattr(sequences_module, "REMEMBERED", 2)
    index, handle = SequenceIndex("m"), make_handle()
    for sequence_id in (1, 2, 3):
        index.end(index.start(sequence_id, handle, 0.0), ENDED)
    with pytest.raises(InvalidRequest, match="is not live: its first request"):
        index.get(1)  # forgotten
    for sequence_id in (2, 3):
        with pytest.raises(InvalidRequest, match=r"ended \(sequence_end\)"):
            index.get(sequence_id)


def test_a_restarted_id_counts_as_newly_ended(monkeypatch):
    monkeypatch.setattr(sequences_module, "REMEMBERED", 2)
    index, handle = SequenceIndex("m"), make_handle()
    index.end(index.start(1, handle, 0.0), ENDED)
    index.end(index.start(2, handle, 0.0), ENDED)
    index.end(index.start(1, handle, 0.0), CUT)  # 1 again: now the newest, 2 the oldest
    index.end(index.start(3, handle, 0.0), ENDED)
    with pytest.raises(InvalidRequest, match="is not live: its first request"):
        index.get(2)
    with pytest.raises(InvalidRequest, match="was ended when its version was unloaded"):
        index.get(1)


# ---- expire / cut ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("idle_timeout", "idle_for", "expired"),
    [
        (1.0, 0.5, False),
        (1.0, 1.0, False),  # exactly the timeout: not yet
        (1.0, 1.01, True),
        (60.0, 59.0, False),
        (60.0, 61.0, True),
        (0.25, 10.0, True),
    ],
)
def test_expire_respects_idle_timeout(idle_timeout, idle_for, expired):
    index, handle = SequenceIndex("m"), make_handle(idle_timeout=idle_timeout)
    sequence = index.start(7, handle, now=100.0)
    ended = index.expire(now=100.0 + idle_for)
    assert ended == ({1: 1} if expired else {})
    assert (7 in index.live) is not expired
    assert sequence.gone == (IDLE if expired else None)
    assert handle.sequences.live == (0 if expired else 1)


def test_expire_counts_last_use_not_start():
    index, handle = SequenceIndex("m"), make_handle(idle_timeout=1.0)
    sequence = index.start(7, handle, now=0.0)
    sequence.last_used = 5.0  # a request at t=5
    assert index.expire(now=5.5) == {}
    assert index.expire(now=6.5) == {1: 1}


def test_expire_uses_each_versions_idle_timeout():
    index = SequenceIndex("m")
    quick, slow = make_handle(1, idle_timeout=1.0), make_handle(2, idle_timeout=10.0)
    for sequence_id in (1, 2, 3):
        index.start(sequence_id, quick, 0.0)
    index.start(4, slow, 0.0)
    assert index.expire(now=5.0) == {1: 3}
    assert set(index.live) == {4}
    assert quick.sequences.live == 0 and slow.sequences.live == 1
    assert index.expire(now=11.0) == {2: 1}


async def test_expire_skips_a_sequence_with_a_request_under_way():
    index, handle = SequenceIndex("m"), make_handle(idle_timeout=1.0)
    busy, idle = index.start(1, handle, 0.0), index.start(2, handle, 0.0)
    async with busy.lock:
        assert index.expire(now=5.0) == {1: 1}
        assert busy.gone is None and idle.gone == IDLE
        assert handle.sequences.live == 1
    assert index.expire(now=5.0) == {1: 1}  # the request is done (and last_used not updated)
    assert busy.gone == IDLE and handle.sequences.live == 0


def test_cut_ends_only_the_sequences_on_that_handle():
    index, h1, h2 = SequenceIndex("m"), make_handle(1), make_handle(2)
    on_h1 = [index.start(i, h1, 0.0) for i in (1, 2, 3)]
    other = index.start(4, h2, 0.0)
    assert index.cut(h1) == 3
    assert all(s.gone == CUT for s in on_h1) and other.gone is None
    assert set(index.live) == {4}
    assert h1.sequences.live == 0 and h2.sequences.live == 1
    assert index.cut(h1) == 0


# ---- migrate -----------------------------------------------------------------------------


async def test_migrate_moves_sequences_by_name_with_their_state():
    index, old, new = SequenceIndex("m"), make_handle(1), make_handle(2)
    moving = [index.start(i, old, 0.0) for i in (1, 2, 3)]
    for i, sequence in enumerate(moving):
        sequence.state["h_in"][:] = i + 1
    elsewhere = index.start(9, new, 0.0)
    migration = await index.migrate(old, lambda s: new, direct)
    assert migration.moved == {2: 3} and migration.stayed == {}
    for i, sequence in enumerate(moving):
        assert sequence.handle is new and sequence.store is new.sequences and sequence.gone is None
        np.testing.assert_array_equal(sequence.state["h_in"], np.full(W, i + 1, np.float32))
        assert index.get(sequence.id) is sequence
    assert index.on(old) == [] and len(index.on(new)) == 4 and elsewhere.handle is new
    assert old.sequences.live == 0 and new.sequences.live == 4
    index.end(moving[0], ENDED)  # ending a migrated sequence frees its new version's room
    assert old.sequences.live == 0 and new.sequences.live == 3


async def test_migrate_copies_the_state():
    index, old, new = SequenceIndex("m"), make_handle(1), make_handle(2)
    sequence = index.start(1, old, 0.0)
    before = sequence.state["h_in"]
    await index.migrate(old, lambda s: new, direct)
    assert sequence.state["h_in"] is not before
    before[:] = 42
    np.testing.assert_array_equal(sequence.state["h_in"], np.zeros(W))


async def test_migrate_asks_target_for_for_each_sequence():
    index, old = SequenceIndex("m"), make_handle(1)
    a, b = make_handle(2), make_handle(3)
    for i in (1, 2, 3, 4):
        index.start(i, old, 0.0)
    asked = []

    def target_for(sequence):
        asked.append(sequence.id)
        return a if sequence.id % 2 else b

    migration = await index.migrate(old, target_for, direct)
    assert sorted(asked) == [1, 2, 3, 4]
    assert migration.moved == {2: 2, 3: 2}
    assert [s.id for s in index.on(a)] == [1, 3] and [s.id for s in index.on(b)] == [2, 4]
    assert (old.sequences.live, a.sequences.live, b.sequences.live) == (0, 2, 2)


@pytest.mark.parametrize("target", ["none", "same", "stateless"])
async def test_migrate_keeps_sequences_without_a_target(target):
    index, old = SequenceIndex("m"), make_handle(1)
    to = {"none": None, "same": old, "stateless": make_handle(2, stateful=False)}[target]
    staying = [index.start(i, old, 0.0) for i in (1, 2)]
    migration = await index.migrate(old, lambda s: to, direct)
    assert migration.moved == {} and migration.stayed == {NO_TARGET: 2}
    assert all(s.handle is old and s.gone is None for s in staying)
    assert old.sequences.live == 2


@pytest.mark.parametrize(
    ("target", "why"),
    [
        (dict(width=2 * W), "state 'h_in' is float32[4], version 2 keeps float32[8]"),
        (dict(dtype="FP64"), "state 'h_in' is float32[4], version 2 keeps float64[4]"),
    ],
)
async def test_migrate_keeps_sequences_whose_state_does_not_convert(target, why):
    index, old, new = SequenceIndex("m"), make_handle(1), make_handle(2, **target)
    staying = [index.start(i, old, 0.0) for i in (1, 2)]
    migration = await index.migrate(old, lambda s: new, direct)
    assert migration.moved == {} and migration.stayed == {why: 2}
    assert all(s.handle is old for s in staying)
    assert old.sequences.live == 2 and new.sequences.live == 0


async def test_migrate_keeps_a_sequence_whose_convert_raises():
    index, old, new = SequenceIndex("m"), make_handle(1), make_handle(2)
    index.start(1, old, 0.0)

    async def broken(fn, *args):
        raise RuntimeError("executor gone")

    migration = await index.migrate(old, lambda s: new, broken)
    assert migration.moved == {} and migration.stayed == {"executor gone": 1}
    assert index.get(1).handle is old
    assert old.sequences.live == 1 and new.sequences.live == 0


async def test_migrate_to_a_full_version_moves_what_fits():
    index, old, new = SequenceIndex("m"), make_handle(1), make_handle(2, max_sequences=2)
    index.start(100, new, 0.0)  # one already there
    for i in (1, 2, 3):
        index.start(i, old, 0.0)
    migration = await index.migrate(old, lambda s: new, direct)
    assert migration.moved == {2: 1}
    assert sum(migration.stayed.values()) == 2
    (why,) = migration.stayed
    assert "holds 2 live sequences" in why and "max_sequences 2" in why
    assert len(index.on(old)) == 2 and len(index.on(new)) == 2
    assert old.sequences.live == 2 and new.sequences.live == 2
    for sequence in index.on(old):  # those that stayed kept their state and still end cleanly
        index.end(sequence, ENDED)
    assert old.sequences.live == 0 and new.sequences.live == 2


async def test_migrate_waits_for_a_request_under_way_and_skips_what_it_ended():
    index, old, new = SequenceIndex("m"), make_handle(1), make_handle(2)
    busy, other = index.start(1, old, 0.0), index.start(2, old, 0.0)
    await busy.lock.acquire()  # a request of sequence 1 is running
    task = asyncio.create_task(index.migrate(old, lambda s: new, direct))
    await asyncio.sleep(0.02)
    assert not task.done() and busy.handle is old
    index.end(busy, ENDED)  # that request was its last
    busy.lock.release()
    migration = await asyncio.wait_for(task, 1.0)
    assert migration.moved == {2: 1} and migration.stayed == {}
    assert other.handle is new and busy.handle is old
    assert old.sequences.live == 0 and new.sequences.live == 1


async def test_migrate_leaves_other_versions_sequences_alone():
    index, old, new, third = SequenceIndex("m"), make_handle(1), make_handle(2), make_handle(3)
    index.start(1, old, 0.0)
    bystander = index.start(2, third, 0.0)
    migration = await index.migrate(old, lambda s: new, direct)
    assert migration.moved == {2: 1}
    assert bystander.handle is third and third.sequences.live == 1


def test_idle_ends_found_by_a_request_are_reported_at_the_next_expire():
    index, handle = SequenceIndex("m"), make_handle(idle_timeout=1.0)
    index.start(1, handle, now=0.0)
    index.start(2, handle, now=0.0)
    with pytest.raises(InvalidRequest, match="was idle"):
        index.get(1, now=5.0)  # a late request finds it idle before the sweep does
    index.start(2, handle, now=5.0)  # a START on an idle id begins afresh
    assert index.expire(now=5.0) == {1: 2}  # both idle ends, reported once
    assert index.expire(now=5.0) == {}
