"""The per-version state store: building it from a signature, feeding and keeping state,
converting it at a migration (by name and through a hook), and its accounting."""

import textwrap

import numpy as np
import pytest
from pydantic import ValidationError

from baton.dev.demo import running_sum_model, write_version
from baton.errors import BatonError, TooManyRequests, VersionFailed
from baton.runtimes.onnx import OnnxRuntime
from baton.serving.sequence_state import VersionSequences
from baton.settings import ModelSettings, SequenceSettings, StateSettings
from baton.types import Signature, TensorSpec

W = 4


def spec(name: str, shape: tuple[int, ...], dtype: str = "FP32") -> TensorSpec:
    return TensorSpec(name, dtype, shape)


def sig(h_in=(-1, W), h_out=None, dtype="FP32", out_dtype=None) -> Signature:
    return Signature(
        (spec("x", (-1, W)), spec("h_in", h_in, dtype)),
        (spec("y", (-1, W)), spec("h_out", h_in if h_out is None else h_out, out_dtype or dtype)),
    )


def state(shape=(W,), dtype="FP32", initial="zeros", i="h_in", o="h_out") -> StateSettings:
    return StateSettings(input=i, output=o, dtype=dtype, shape=shape, initial=initial)


def build(signature=None, *states, version=1, version_dir=None, **settings) -> VersionSequences:
    sequence = SequenceSettings(state=states or (state(),), **settings)
    return VersionSequences.build("m", version, sequence, signature or sig(), version_dir)


# ---- build -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signature", "states", "problem"),
    [
        (sig(), (state(i="c_in"),), "state c_in -> h_out: the model has no tensor 'c_in'"),
        (sig(), (state(o="c_out"),), "state h_in -> c_out: the model has no tensor 'c_out'"),
        (sig(dtype="INT32"), (state(),), "'h_in' is INT32, not FP32"),
        (sig(out_dtype="FP16"), (state(),), "'h_out' is FP16, not FP32"),
        (
            sig(h_in=(-1, 8)),
            (state(),),
            "'h_in' has shape [-1, 8], which does not hold a state of shape [4]",
        ),
        (
            sig(h_out=(-1, 8)),
            (state(),),
            "'h_out' has shape [-1, 8], which does not hold a state of shape [4]",
        ),
        (sig(h_in=(8,)), (state(),), "'h_in' has shape [8]"),  # unbatched, wrong size
        (sig(h_in=(-1, W, 2)), (state(),), "'h_in' has shape [-1, 4, 2]"),  # wrong rank
        (sig(h_in=(W, 2)), (state(shape=(W, 3)),), "'h_in' has shape [4, 2]"),
        # a batched input ([-1, 4]) and an unbatched output ([4]) of the same state
        (sig(h_out=(W,)), (state(),), "'h_out' has shape [4], which does not hold"),
        # an unbatched input ([4]) and a batched output ([-1, 4])
        (sig(h_in=(W,), h_out=(-1, W)), (state(),), "'h_out' has shape [-1, 4]"),
    ],
    ids=lambda v: repr(v)[:50] if isinstance(v, str) else None,
)
def test_build_refuses_a_state_that_does_not_fit(signature, states, problem):
    with pytest.raises(VersionFailed) as caught:
        build(signature, *states)
    assert caught.value.reason == "bad_sequence_config"
    assert problem in str(caught.value)


def test_build_reports_every_problem():
    signature = Signature(
        (spec("x", (-1, W)), spec("a_in", (-1, W), "INT64")),
        (spec("y", (-1, W)), spec("a_out", (-1, W), "INT64")),
    )
    with pytest.raises(VersionFailed) as caught:
        build(signature, state(i="a_in", o="a_out"), state(i="b_in", o="b_out"))
    message = str(caught.value)
    assert "'a_in' is INT64, not FP32" in message and "'a_out' is INT64, not FP32" in message
    assert "the model has no tensor 'b_in'" in message
    assert message.count("; ") == 2


def test_build_refuses_a_batched_input_whose_batch_is_not_one():
    """A state input of shape [2, 4] for a state of shape [4] is taken as batched, but feed()
    gives it [1, 4]: the model refuses every request. build() must refuse the declaration."""
    with pytest.raises(VersionFailed, match="does not hold a state"):
        build(sig(h_in=(2, W)), state())


@pytest.mark.parametrize(
    ("h_in", "shape", "batched"),
    [
        ((-1, W), (W,), True),
        ((1, W), (W,), True),
        ((-1, -1), (W,), True),
        ((W,), (W,), False),
        ((-1,), (W,), False),
        ((-1, W, 2), (W, 2), True),
        ((W, 2), (W, 2), False),
        ((-1,), (), True),  # a scalar state of a batched model
        ((), (), False),
    ],
)
def test_build_accepts_batched_and_unbatched_state(h_in, shape, batched):
    store = build(sig(h_in=h_in), state(shape=shape))
    (only,) = store.specs
    assert only.batched is batched and only.shape == shape
    assert (only.input, only.output, only.datatype) == ("h_in", "h_out", "FP32")
    fed = store.feed(store.initial())["h_in"]
    assert fed.shape == ((1, *shape) if batched else shape)


@pytest.mark.parametrize(
    ("dtype", "initial", "expected"),
    [
        ("FP32", "zeros", np.zeros(W, np.float32)),
        ("FP32", 2.5, np.full(W, 2.5, np.float32)),
        ("FP32", -1, np.full(W, -1, np.float32)),
        ("FP64", 0.1, np.full(W, 0.1, np.float64)),
        ("INT64", 3, np.full(W, 3, np.int64)),
        ("INT32", "zeros", np.zeros(W, np.int32)),
        ("FP16", 1.5, np.full(W, 1.5, np.float16)),
        ("BOOL", 1, np.ones(W, np.bool_)),
    ],
)
def test_initial_state(dtype, initial, expected):
    store = build(sig(dtype=dtype), state(dtype=dtype, initial=initial))
    value = store.initial()["h_in"]
    assert value.dtype == expected.dtype and value.shape == (W,)
    np.testing.assert_array_equal(value, expected)


@pytest.mark.parametrize(("dtype", "initial"), [("UINT8", -1), ("INT32", 1.5), ("INT8", 300)])
def test_an_initial_value_the_dtype_cannot_hold_is_refused(dtype, initial):
    """``initial: -1`` on a UINT8 state must not silently become 255 (nor 1.5 become 1): the
    declaration is refused, by the settings or when the store is built."""
    with pytest.raises((ValidationError, VersionFailed)):
        build(sig(dtype=dtype), state(dtype=dtype, initial=initial))


def test_initial_gives_a_fresh_copy_each_time():
    store = build(None, state(initial=1.0))
    first = store.initial()
    first["h_in"][:] = 9
    np.testing.assert_array_equal(store.initial()["h_in"], np.ones(W, np.float32))


def test_public_signature_hides_the_state_tensors():
    signature = Signature(
        (spec("x", (-1, W)), spec("h_in", (-1, W)), spec("c_in", (-1, 2), "INT64")),
        (
            spec("y", (-1, W)),
            spec("h_out", (-1, W)),
            spec("c_out", (-1, 2), "INT64"),
            spec("z", (1,)),
        ),
    )
    store = build(signature, state(), state(shape=(2,), dtype="INT64", i="c_in", o="c_out"))
    public = store.public_signature(signature)
    assert public == Signature((spec("x", (-1, W)),), (spec("y", (-1, W)), spec("z", (1,))))
    assert store.state_outputs == ("h_out", "c_out")
    assert signature.input("h_in") is not None  # the full signature is unchanged


# ---- feed / keep -------------------------------------------------------------------------


@pytest.mark.parametrize(("h_in", "batched"), [((-1, W), True), ((W,), False)])
def test_feed_keep_round_trip(h_in, batched):
    store = build(sig(h_in=h_in))
    current = {"h_in": np.arange(W, dtype=np.float32)}
    fed = store.feed(current)
    assert set(fed) == {"h_in"}
    assert fed["h_in"].shape == ((1, W) if batched else (W,))
    np.testing.assert_array_equal(fed["h_in"].reshape(W), current["h_in"])

    y = np.ones((1, W), np.float32)
    outputs = {"y": y, "h_out": fed["h_in"] + 1}
    kept = store.keep(outputs)
    assert outputs == {"y": y}  # the state output left the answer
    assert set(kept) == {"h_in"} and kept["h_in"].shape == (W,)
    np.testing.assert_array_equal(kept["h_in"], np.arange(1, W + 1, dtype=np.float32))


def test_keep_casts_to_the_state_dtype_and_makes_it_contiguous():
    store = build()
    strided = np.arange(2 * W, dtype=np.float64)[::2].reshape(1, W)
    kept = store.keep({"h_out": strided})["h_in"]
    assert kept.dtype == np.float32 and kept.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(kept, [0, 2, 4, 6])


def test_feed_and_keep_two_states():
    signature = Signature(
        (spec("x", (-1, W)), spec("h_in", (-1, W)), spec("c_in", (-1, 2), "INT64")),
        (spec("y", (-1, W)), spec("h_out", (-1, W)), spec("c_out", (-1, 2), "INT64")),
    )
    store = build(signature, state(), state(shape=(2,), dtype="INT64", i="c_in", o="c_out"))
    fed = store.feed(store.initial())
    assert fed["h_in"].shape == (1, W) and fed["c_in"].shape == (1, 2)
    outputs = {"y": np.zeros((1, W)), "h_out": np.ones((1, W)), "c_out": np.array([[5, 6]])}
    kept = store.keep(outputs)
    assert list(outputs) == ["y"]
    np.testing.assert_array_equal(kept["c_in"], [5, 6])
    assert kept["c_in"].dtype == np.int64


@pytest.mark.parametrize(
    ("h_in", "returned", "got"),
    [
        ((-1, W), np.zeros((1, 2 * W), np.float32), "shape [8]"),
        ((-1, W), np.zeros((2, W), np.float32), "shape [2, 4]"),
        ((-1, W), np.zeros((1, 1, W), np.float32), "shape [1, 4]"),
        ((W,), np.zeros((1, W), np.float32), "shape [1, 4]"),  # unbatched: no leading 1 taken
        ((W,), np.zeros(2 * W, np.float32), "shape [8]"),
        ((-1, W), None, "nothing"),
    ],
)
def test_keep_refuses_a_state_of_the_wrong_shape(h_in, returned, got):
    store = build(sig(h_in=h_in), version=3)
    outputs = {"y": np.zeros((1, W))} if returned is None else {"h_out": returned}
    with pytest.raises(BatonError) as caught:
        store.keep(outputs)
    assert str(caught.value) == (
        f"model 'm' version 3 returned {got} for state output 'h_out', declared [4]; "
        "the state is unchanged"
    )


# ---- convert -----------------------------------------------------------------------------


def test_convert_by_name_copies_the_state():
    old, new = build(version=1), build(version=2)
    current = {"h_in": np.arange(W, dtype=np.float32)}
    converted = new.convert(current, old)
    np.testing.assert_array_equal(converted["h_in"], current["h_in"])
    assert converted["h_in"] is not current["h_in"]
    assert not np.shares_memory(converted["h_in"], current["h_in"])


def test_convert_by_name_ignores_state_the_new_version_no_longer_keeps():
    two = Signature(
        (spec("x", (-1, W)), spec("h_in", (-1, W)), spec("c_in", (-1, 2))),
        (spec("y", (-1, W)), spec("h_out", (-1, W)), spec("c_out", (-1, 2))),
    )
    old = build(two, state(), state(shape=(2,), i="c_in", o="c_out"))
    new = build(version=2)
    converted = new.convert(old.initial(), old)
    assert set(converted) == {"h_in"}


@pytest.mark.parametrize(
    ("new_sig", "new_state", "message"),
    [
        (
            sig(h_in=(-1, 8)),
            state(shape=(8,)),
            "state 'h_in' is float32[4], version 2 keeps float32[8]",
        ),
        (
            sig(dtype="FP64"),
            state(dtype="FP64"),
            "state 'h_in' is float32[4], version 2 keeps float64[4]",
        ),
        (sig(dtype="INT32"), state(dtype="INT32"), "version 2 keeps int32[4]"),
        (
            Signature(
                (spec("x", (-1, W)), spec("g_in", (-1, W))),
                (spec("y", (-1, W)), spec("g_out", (-1, W))),
            ),
            state(i="g_in", o="g_out"),
            "version 1 has no state 'g_in' for version 2",
        ),
    ],
)
def test_convert_by_name_refuses_what_does_not_match(new_sig, new_state, message):
    old, new = build(version=1), build(new_sig, new_state, version=2)
    with pytest.raises(ValueError) as caught:
        new.convert(old.initial(), old)
    assert message in str(caught.value)


def hook_store(tmp_path, body: str, *, width: int = W, version: int = 2) -> VersionSequences:
    (tmp_path / "migrate.py").write_text(textwrap.dedent(body))
    return build(
        sig(h_in=(-1, width)),
        state(shape=(width,)),
        version=version,
        version_dir=tmp_path,
        migrate_hook="migrate.py",
    )


def test_convert_through_a_hook(tmp_path):
    new = hook_store(
        tmp_path,
        """
        import numpy as np

        def migrate(state, from_version, to_version):
            h = state["h_in"]
            return {"h_in": np.concatenate([h, np.full(4, 10 * from_version + to_version,
                                                       np.float32)])}
        """,
        width=2 * W,
        version=2,
    )
    old = build(version=1)
    converted = new.convert({"h_in": np.arange(W, dtype=np.float32)}, old)
    np.testing.assert_array_equal(converted["h_in"], [0, 1, 2, 3, 12, 12, 12, 12])
    assert converted["h_in"].dtype == np.float32


def test_a_hook_cannot_change_the_old_state(tmp_path):
    new = hook_store(
        tmp_path,
        """
        def migrate(state, from_version, to_version):
            state["h_in"] += 1
            return state
        """,
    )
    current = {"h_in": np.zeros(W, np.float32)}
    converted = new.convert(current, build(version=1))
    np.testing.assert_array_equal(current["h_in"], np.zeros(W))
    np.testing.assert_array_equal(converted["h_in"], np.ones(W))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "def migrate(state, a, b):\n    return {'h_in': state['h_in'][:2]}\n",
            "state 'h_in' is float32[2], version 2 keeps float32[4]",
        ),
        (
            "import numpy as np\ndef migrate(state, a, b):\n    return {'h_in': np.zeros(4)}\n",
            "state 'h_in' is float64[4], version 2 keeps float32[4]",
        ),
        (
            "def migrate(state, a, b):\n    return [state]\n",
            "migrate hook returned list, not a dict",
        ),
        ("def migrate(state, a, b):\n    return None\n", "returned NoneType, not a dict"),
        ("def migrate(state, a, b):\n    return 1 / 0\n", "migrate hook failed: ZeroDivisionError"),
        ("def migrate(state, a, b):\n    return {}\n", "the migrate hook has no state 'h_in'"),
        ("def migrate(state):\n    return state\n", "migrate hook failed: TypeError"),
    ],
)
def test_a_hook_that_gives_no_usable_state(tmp_path, body, message):
    new = hook_store(tmp_path, body)
    with pytest.raises(ValueError) as caught:
        new.convert({"h_in": np.zeros(W, np.float32)}, build(version=1))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "migrate_hook migrate.py is not in the version"),
        ({"other.py": "def migrate(s, a, b):\n    return s\n"}, "is not in the version"),
        ({"migrate.py": "def convert(s, a, b):\n    return s\n"}, "defines no migrate()"),
        ({"migrate.py": "migrate = 3\n"}, "defines no migrate()"),
        ({"migrate.py": "def migrate(:\n"}, "migrate_hook migrate.py failed to import"),
        ({"migrate.py": "raise RuntimeError('no')\n"}, "failed to import: no"),
    ],
)
def test_a_bad_hook_file_fails_the_build(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(VersionFailed) as caught:
        build(version_dir=tmp_path, migrate_hook="migrate.py")
    assert caught.value.reason == "bad_sequence_config"
    assert message in str(caught.value)


def test_a_hook_can_read_files_next_to_it(tmp_path):
    np.save(tmp_path / "offset.npy", np.full(W, 0.5, np.float32))
    new = hook_store(
        tmp_path,
        """
        from pathlib import Path

        import numpy as np

        OFFSET = np.load(Path(__file__).parent / "offset.npy")

        def migrate(state, from_version, to_version):
            return {"h_in": state["h_in"] + OFFSET}
        """,
    )
    converted = new.convert({"h_in": np.ones(W, np.float32)}, build(version=1))
    np.testing.assert_array_equal(converted["h_in"], np.full(W, 1.5, np.float32))


def test_a_hook_annotations_are_evaluated_as_written(tmp_path):
    """The hook file has no ``from __future__ import annotations``, so its annotations are
    objects; compile() must not hand it the future flags of sequence_state.py."""
    new = hook_store(
        tmp_path,
        """
        def scale(factor: float) -> float:
            return factor

        assert scale.__annotations__ == {"factor": float, "return": float}, scale.__annotations__

        def migrate(state, from_version, to_version):
            return state
        """,
    )
    assert new.hook is not None


@pytest.mark.parametrize("postponed", [False, True], ids=["plain", "future_annotations"])
def test_a_hook_may_define_a_dataclass(tmp_path, postponed):
    """A dataclass in a hook file builds, with or without postponed annotations."""
    new = hook_store(
        tmp_path,
        ("from __future__ import annotations\n" if postponed else "")
        + """
from dataclasses import dataclass

@dataclass
class Scale:
    factor: float

SCALE = Scale(2.0)

def migrate(state, from_version, to_version):
    return {"h_in": state["h_in"] * SCALE.factor}
""",
    )
    converted = new.convert({"h_in": np.ones(W, np.float32)}, build(version=1))
    np.testing.assert_array_equal(converted["h_in"], np.full(W, 2.0, np.float32))


def test_a_symlinked_hook_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "migrate.py").write_text("def migrate(s, a, b):\n    return s\n")
    version_dir = tmp_path / "1"
    version_dir.mkdir()
    (version_dir / "migrate.py").symlink_to(outside / "migrate.py")
    with pytest.raises(VersionFailed, match="is not in the version"):
        build(version_dir=version_dir, migrate_hook="migrate.py")


def test_a_hook_needs_a_version_directory():
    with pytest.raises(VersionFailed, match="is not in the version"):
        build(version_dir=None, migrate_hook="migrate.py")


def test_a_hook_directory_is_not_a_hook_file(tmp_path):
    (tmp_path / "migrate.py").mkdir()
    with pytest.raises(VersionFailed, match="is not in the version"):
        build(version_dir=tmp_path, migrate_hook="migrate.py")


def test_no_hook_is_imported_without_migrate_hook(tmp_path):
    (tmp_path / "migrate.py").write_text("raise RuntimeError('imported')\n")
    assert build(version_dir=tmp_path).hook is None


# ---- accounting --------------------------------------------------------------------------


def test_live_and_bytes():
    signature = Signature(
        (spec("x", (-1, W)), spec("h_in", (-1, W)), spec("c_in", (-1, 2, 3), "INT64")),
        (spec("y", (-1, W)), spec("h_out", (-1, W)), spec("c_out", (-1, 2, 3), "INT64")),
    )
    store = build(
        signature,
        state(),
        state(shape=(2, 3), dtype="INT64", i="c_in", o="c_out"),
        max_sequences=3,
    )
    one = W * 4 + 6 * 8
    assert store.state_bytes == one
    assert (store.live, store.bytes) == (0, 0)
    for n in (1, 2, 3):
        store.admit()
        assert (store.live, store.bytes) == (n, n * one)
    with pytest.raises(TooManyRequests) as caught:
        store.admit()
    assert caught.value.http_status == 429
    assert "model 'm' version 1 holds 3 live sequences" in str(caught.value)
    assert (store.live, store.bytes) == (3, 3 * one)
    store.release()
    assert (store.live, store.bytes) == (2, 2 * one)
    store.admit()  # room again
    assert store.live == 3


# ---- end to end on ONNX Runtime ----------------------------------------------------------


def test_running_sum_on_onnx_runtime(tmp_path):
    width = 8
    path = write_version(tmp_path / "running_sum", 1, running_sum_model(2.0, width=width))
    runtime = OnnxRuntime(path, ModelSettings())
    runtime.load()
    signature = runtime.signature()
    store = VersionSequences.build(
        "running_sum",
        1,
        SequenceSettings(state=(state(shape=(width,)),)),
        signature,
        path,
    )
    assert store.specs[0].batched
    public = store.public_signature(signature)
    assert [t.name for t in public.inputs] == ["x"] and [t.name for t in public.outputs] == ["y"]

    current, total = store.initial(), 0.0
    for x in (1.0, 3.0, -0.5):
        total += x
        outputs = runtime.predict({"x": np.array([[x]], np.float32), **store.feed(current)}, None)
        current = store.keep(outputs)
        assert set(outputs) == {"y"}
        np.testing.assert_allclose(outputs["y"], [[2.0 * total]], rtol=1e-6)
        np.testing.assert_allclose(current["h_in"], np.full(width, 2.0 * total), rtol=1e-6)
    assert total == 3.5
