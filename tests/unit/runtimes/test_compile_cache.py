"""The compile cache: optimised graphs reused across loads, never with the wrong weights."""

import threading
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from baton.dev.demo import affine_model, mlp_model, with_new_head
from baton.runtimes.compile_cache import MAC_BYTES, MAGIC, CompileCache, load_or_create_key

X = np.random.default_rng(0).standard_normal((2, 32)).astype(np.float32)


def options(level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL) -> ort.SessionOptions:
    o = ort.SessionOptions()
    o.graph_optimization_level = level
    o.log_severity_level = 3
    return o


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def load(cache: CompileCache, path: Path, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
    compiled = cache.session(path, options(level), ["CPUExecutionProvider"])
    return compiled.outcome, compiled.session.run(None, {"x": X})[0]


def reference(path: Path) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": X})[
        0
    ]


@pytest.fixture
def cache(tmp_path):
    return CompileCache(tmp_path / "cache")


def test_second_load_hits_and_answers_the_same(cache, tmp_path):
    path = save(mlp_model(width=32, layers=6), tmp_path / "v1" / "model.onnx")
    assert load(cache, path)[0] == "miss"
    outcome, answer = load(cache, path)
    assert outcome == "hit"
    np.testing.assert_allclose(answer, reference(path), rtol=1e-6)


def test_a_weights_only_update_hits_and_uses_the_new_weights(cache, tmp_path):
    base = mlp_model(width=32, layers=6)
    v1 = save(base, tmp_path / "v1" / "model.onnx")
    v2 = save(with_new_head(base, 3), tmp_path / "v2" / "model.onnx")
    load(cache, v1)
    outcome, answer = load(cache, v2)
    assert outcome == "hit"
    np.testing.assert_allclose(answer, reference(v2), rtol=1e-6)
    assert not np.allclose(answer, reference(v1))
    entry = next((tmp_path / "cache").glob("*.entry"))
    assert entry.stat().st_size < v2.stat().st_size / 10  # stored without its weights


def test_other_structure_or_level_misses(cache, tmp_path):
    v1 = save(mlp_model(width=32, layers=6), tmp_path / "v1" / "model.onnx")
    deeper = save(mlp_model(width=32, layers=7), tmp_path / "v2" / "model.onnx")
    load(cache, v1)
    assert load(cache, deeper)[0] == "miss"
    assert load(cache, v1, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)[0] == "miss"


def folding_model(scale: float) -> onnx.ModelProto:
    """y = x @ transpose(w) * 1: the optimiser folds transpose(w) into a new weight."""
    w = np.full((32, 32), scale, np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
            helper.make_node("MatMul", ["x", "wt"], ["y"]),
        ],
        "fold",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_weights_the_optimiser_rewrote_are_never_reused_for_other_weights(cache, tmp_path):
    v1 = save(folding_model(1.0), tmp_path / "v1" / "model.onnx")
    v2 = save(folding_model(2.0), tmp_path / "v2" / "model.onnx")
    load(cache, v1)
    outcome, answer = load(cache, v2)
    assert outcome == "miss"  # v1's folded weight must not stand in for v2's
    np.testing.assert_allclose(answer, reference(v2), rtol=1e-6)
    assert load(cache, v1)[0] == "hit"  # but v1 itself reloads from the cache


def test_merged_equal_weights_are_not_reused_for_unequal_ones(cache, tmp_path):
    """In y = x * scale + offset with scale == offset, ORT keeps one initializer for both; a
    version where they differ must not inherit that."""
    width = 4
    v1 = save(affine_model(1.0, width=width), tmp_path / "v1" / "model.onnx")  # scale 1 = offset 1
    v2 = save(affine_model(40.0, width=width), tmp_path / "v2" / "model.onnx")
    x = np.full((1, width), 2.0, np.float32)
    for path, expected in ((v1, 3.0), (v2, 42.0)):
        compiled = cache.session(path, options(), ["CPUExecutionProvider"])
        np.testing.assert_allclose(compiled.session.run(None, {"x": x})[0], expected)
    assert compiled.outcome == "miss"


def test_a_damaged_entry_is_dropped(cache, tmp_path):
    path = save(mlp_model(width=32, layers=6), tmp_path / "v1" / "model.onnx")
    load(cache, path)
    entry = next((tmp_path / "cache").glob("*.entry"))
    entry.write_bytes(b"garbage")
    outcome, answer = load(cache, path)
    assert outcome == "rejected"  # discarded, compiled afresh
    np.testing.assert_allclose(answer, reference(path), rtol=1e-6)
    assert load(cache, path)[0] == "hit"  # and stored again


def test_a_poisoned_entry_is_refused_even_when_well_formed(cache, tmp_path):
    """An attacker who can write the cache directory (but not read the server's key) swaps in
    a valid graph that computes something else: its MAC does not check out."""
    v1 = save(affine_model(1.0, width=32), tmp_path / "v1" / "model.onnx")
    evil = save(affine_model(1000.0, width=32), tmp_path / "evil" / "model.onnx")
    load(cache, v1)
    entry = next((tmp_path / "cache").glob("*.entry"))
    data = entry.read_bytes()
    header = data[: len(MAGIC) + MAC_BYTES]
    entry.write_bytes(header + onnx.load(str(evil)).SerializeToString())  # same MAC, other graph
    outcome, answer = load(cache, v1)
    assert outcome == "rejected"
    np.testing.assert_allclose(answer, reference(v1), rtol=1e-6)
    other_key = CompileCache(tmp_path / "cache", key=b"k" * 32)  # another server's entries
    assert load(other_key, v1)[0] == "rejected"


def test_the_key_is_kept_private_and_reused(tmp_path):
    path = tmp_path / "state" / "compile-cache.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and load_or_create_key(path) == key
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_cache_stays_under_its_size_bound(tmp_path):
    cache = CompileCache(tmp_path / "cache", max_bytes=1)  # room for the newest entry only
    for layers in (3, 4, 5):
        load(cache, save(mlp_model(width=32, layers=layers), tmp_path / f"{layers}" / "m.onnx"))
    assert len(list((tmp_path / "cache").glob("*.entry"))) <= 1
    assert not list((tmp_path / "cache").glob(".*"))  # no scratch files left behind


def test_concurrent_loads_of_one_model(cache, tmp_path):
    path = save(mlp_model(width=32, layers=6), tmp_path / "v1" / "model.onnx")
    outcomes, errors = [], []

    def worker():
        try:
            outcomes.append(load(cache, path)[0])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(outcomes) == 4
    assert load(cache, path)[0] == "hit"


def test_a_cache_that_cannot_be_written_never_fails_a_load(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    cache = CompileCache(tmp_path / "file" / "cache")
    path = save(mlp_model(width=32, layers=3), tmp_path / "v1" / "model.onnx")
    outcome, answer = load(cache, path)
    assert outcome == "bypass"
    np.testing.assert_allclose(answer, reference(path), rtol=1e-6)
