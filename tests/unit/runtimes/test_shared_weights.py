"""Shared weights: large ONNX models map their weights from one packed compile-cache entry, so
every process that loads the model holds them once — and never with the wrong weights."""

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import external_data_helper

from baton.dev.demo import affine_model, mlp_model, with_new_head
from baton.errors import VersionFailed
from baton.runtimes import compile_cache, shared_weights
from baton.runtimes import onnx_graphs as graphs
from baton.runtimes.compile_cache import CompileCache
from baton.runtimes.onnx import OnnxRuntime
from baton.settings import ModelSettings

pytestmark = pytest.mark.skipif(not shared_weights.available(), reason="needs /proc/self/fd")

WIDTH = 256  # 4 layers of 256² FP32: 1 MiB of weights, above the threshold set below
X = np.random.default_rng(0).standard_normal((3, WIDTH)).astype(np.float32)
KEY = b"k" * 32


@pytest.fixture(autouse=True)
def small_threshold(monkeypatch):
    monkeypatch.setattr(compile_cache, "SHARE_MIN_BYTES", 2**20)


def version(path: Path, model: onnx.ModelProto, **external) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path / "model.onnx"), **external)
    return path


def reference(path: Path) -> np.ndarray:
    session = ort.InferenceSession(str(path / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": X})[0]


def load(path: Path, cache_dir: Path, **settings) -> OnnxRuntime:
    """A fresh cache object on a shared directory and key: what another worker has."""
    cache = CompileCache(cache_dir, key=KEY)
    runtime = OnnxRuntime(path, ModelSettings(**settings), cache)
    runtime.load()
    return runtime


def answer(runtime: OnnxRuntime) -> np.ndarray:
    return runtime.predict({"x": X}, None)["y"]


def mapped(cache_dir: Path) -> set[str]:
    """The packed entries whose data file this process maps now."""
    lines = Path("/proc/self/maps").read_text().splitlines()
    root = str(cache_dir.resolve())
    return {
        line.split(maxsplit=5)[-1]
        for line in lines
        if line.endswith(shared_weights.DATA) and root in line
    }


def entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("*.packed"))


def test_every_load_maps_one_entry(tmp_path):
    v1 = version(tmp_path / "m" / "1", mlp_model(width=WIDTH, layers=4))
    first = load(v1, tmp_path / "cache")
    assert first.compile_outcome == "miss"
    (entry,) = entries(tmp_path / "cache")
    assert mapped(tmp_path / "cache") == {str(entry.resolve() / shared_weights.DATA)}
    second = load(v1, tmp_path / "cache")
    assert second.compile_outcome == "hit"
    assert entries(tmp_path / "cache") == [entry]
    for runtime in (first, second):
        np.testing.assert_allclose(answer(runtime), reference(v1), rtol=1e-5, atol=1e-5)
    assert (entry / shared_weights.DATA).stat().st_mode & 0o222 == 0  # nobody writes it


def test_the_version_directory_may_go_once_loaded(tmp_path):
    v1 = version(tmp_path / "m" / "1", mlp_model(width=WIDTH, layers=4))
    expected = reference(v1)
    runtime = load(v1, tmp_path / "cache")
    shutil.rmtree(v1)  # what the loader does with a verified copy
    np.testing.assert_allclose(answer(runtime), expected, rtol=1e-5, atol=1e-5)


def test_an_entry_evicted_while_mapped_keeps_serving(tmp_path):
    v1 = version(tmp_path / "m" / "1", mlp_model(width=WIDTH, layers=4))
    runtime = load(v1, tmp_path / "cache")
    for entry in entries(tmp_path / "cache"):
        shutil.rmtree(entry)
    np.testing.assert_allclose(answer(runtime), reference(v1), rtol=1e-5, atol=1e-5)
    assert load(v1, tmp_path / "cache").compile_outcome == "hit"  # the structure entry
    assert len(entries(tmp_path / "cache")) == 1  # and a packed entry again


def test_a_weights_only_update_gets_its_own_entry(tmp_path):
    base = mlp_model(width=WIDTH, layers=4)
    v1 = version(tmp_path / "m" / "1", base)
    v2 = version(tmp_path / "m" / "2", with_new_head(base, 3))
    load(v1, tmp_path / "cache")
    runtime = load(v2, tmp_path / "cache")
    assert runtime.compile_outcome == "hit"  # optimisation skipped: the structure entry
    assert len(entries(tmp_path / "cache")) == 2
    np.testing.assert_allclose(answer(runtime), reference(v2), rtol=1e-5, atol=1e-5)
    assert not np.allclose(answer(runtime), reference(v1))
    assert load(v2, tmp_path / "cache").compile_outcome == "hit"


@pytest.mark.parametrize("part", [shared_weights.DATA, shared_weights.GRAPH])
def test_a_tampered_entry_is_rejected(tmp_path, part):
    v1 = version(tmp_path / "m" / "1", affine_model(1.0, padding_floats=2**18))
    load(v1, tmp_path / "cache")
    (entry,) = entries(tmp_path / "cache")
    target = entry / part
    data = bytearray(target.read_bytes())
    data[-5] ^= 0xFF
    target.chmod(0o644)
    target.write_bytes(bytes(data))
    target.chmod(0o444)
    runtime = load(v1, tmp_path / "cache")
    assert runtime.compile_outcome == "rejected"
    x = np.full((1, 4), 2.0, np.float32)
    np.testing.assert_allclose(runtime.predict({"x": x}, None)["y"], 3.0)
    assert load(v1, tmp_path / "cache").compile_outcome == "hit"  # kept again, sound


def test_an_entry_others_can_write_is_rejected(tmp_path):
    v1 = version(tmp_path / "m" / "1", affine_model(1.0, padding_floats=2**18))
    load(v1, tmp_path / "cache")
    (entry,) = entries(tmp_path / "cache")
    entry.chmod(0o777)  # anyone could have swapped its files
    assert load(v1, tmp_path / "cache").compile_outcome == "rejected"
    assert entry.stat().st_mode & 0o777 == 0o700  # made afresh


def test_the_checked_directory_is_the_one_mapped(tmp_path):
    """Renaming the entry away after it was opened (and putting an impostor in its place)
    changes nothing: ORT reads the files through the open directory."""
    v1 = version(tmp_path / "m" / "1", mlp_model(width=WIDTH, layers=4))
    load(v1, tmp_path / "cache")
    (entry,) = entries(tmp_path / "cache")
    cache = CompileCache(tmp_path / "cache", key=KEY)
    directory = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
    try:
        entry.rename(tmp_path / "elsewhere")
        impostor = version(entry, mlp_model(width=WIDTH, layers=4, seed=9))
        (impostor / shared_weights.DATA).write_bytes(b"\0" * 2**20)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = shared_weights.open_session(
            directory,
            lambda payload: cache._mac(f"{entry.name.removesuffix('.packed')}.packed", payload),
            options,
            ["CPUExecutionProvider"],
        )
    finally:
        os.close(directory)
    np.testing.assert_allclose(session.run(None, {"x": X})[0], reference(v1), rtol=1e-5,
                               atol=1e-5)  # fmt: skip


def test_external_data_shares_and_is_part_of_the_key(tmp_path):
    external = {"save_as_external_data": True, "location": "weights.bin"}
    v1 = version(tmp_path / "m" / "1", mlp_model(width=WIDTH, layers=4), **external)
    runtime = load(v1, tmp_path / "cache")
    assert runtime.compile_outcome == "miss"
    np.testing.assert_allclose(answer(runtime), reference(v1), rtol=1e-5, atol=1e-5)
    assert load(v1, tmp_path / "cache").compile_outcome == "hit"
    # same model.onnx, other weights in the data file: another entry, the new answers
    v2 = version(tmp_path / "m" / "2", mlp_model(width=WIDTH, layers=4, seed=5), **external)
    assert (v1 / "model.onnx").read_bytes() == (v2 / "model.onnx").read_bytes()
    shutil.copy(v2 / "weights.bin", v1 / "weights.bin")
    again = load(v1, tmp_path / "cache")
    assert again.compile_outcome == "miss"
    np.testing.assert_allclose(answer(again), reference(v2), rtol=1e-5, atol=1e-5)


def test_external_data_without_a_cache_survives_the_directory(tmp_path):
    external = {"save_as_external_data": True, "location": "weights.bin"}
    v1 = version(tmp_path / "m" / "1", mlp_model(width=WIDTH, layers=4), **external)
    expected = reference(v1)
    runtime = OnnxRuntime(v1, ModelSettings())
    runtime.load()
    shutil.rmtree(v1)
    np.testing.assert_allclose(answer(runtime), expected, rtol=1e-5, atol=1e-5)


def test_unoptimised_models_share_too(tmp_path):
    v1 = version(tmp_path / "m" / "1", mlp_model(width=WIDTH, layers=4))
    settings = {"onnx": {"graph_optimization_level": "disable"}}
    assert load(v1, tmp_path / "cache", **settings).compile_outcome == "miss"
    runtime = load(v1, tmp_path / "cache", **settings)
    assert runtime.compile_outcome == "hit"
    np.testing.assert_allclose(answer(runtime), reference(v1), rtol=1e-5, atol=1e-5)


def test_models_that_cannot_share_load_from_their_file(tmp_path):
    v1 = version(tmp_path / "m" / "1", mlp_model(width=WIDTH, layers=4))
    for cache in (
        CompileCache(tmp_path / "off", key=KEY, share_weights=False),
        CompileCache(tmp_path / "small", max_bytes=2**21, key=KEY),  # the entry would not fit
    ):
        runtime = OnnxRuntime(v1, ModelSettings(), cache)
        runtime.load()
        assert runtime.compile_outcome == "bypass"
        assert not entries(cache.directory) and not mapped(cache.directory)
        np.testing.assert_allclose(answer(runtime), reference(v1), rtol=1e-5, atol=1e-5)


def test_small_models_keep_the_graph_cache(tmp_path):
    v1 = version(tmp_path / "m" / "1", mlp_model(width=32, layers=4))
    assert load(v1, tmp_path / "cache").compile_outcome == "miss"
    assert load(v1, tmp_path / "cache").compile_outcome == "hit"
    assert not entries(tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.entry"))) == 1


def test_concurrent_first_loads(tmp_path):
    v1 = version(tmp_path / "m" / "1", mlp_model(width=WIDTH, layers=4))
    runtimes, errors = [], []

    def worker():
        try:
            runtimes.append(load(v1, tmp_path / "cache"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(runtimes) == 3
    for runtime in runtimes:
        np.testing.assert_allclose(answer(runtime), reference(v1), rtol=1e-5, atol=1e-5)
    assert len(entries(tmp_path / "cache")) == 1
    assert not list((tmp_path / "cache").glob(".*"))  # no scratch left behind
    assert load(v1, tmp_path / "cache").compile_outcome == "hit"


def assert_first_load_shares(version_dir, cache, expected) -> None:
    """The first load builds the one packed entry and maps its data; the next one hits it."""
    runtime = load(version_dir, cache)
    assert runtime.compile_outcome == "miss"
    np.testing.assert_allclose(answer(runtime), expected, rtol=1e-5, atol=1e-5)
    (entry,) = entries(cache)
    assert mapped(cache) == {str(entry.resolve() / shared_weights.DATA)}
    assert load(version_dir, cache).compile_outcome == "hit"


def test_weights_in_the_model_file_and_a_data_file_share_together(tmp_path):
    model = mlp_model(width=WIDTH, layers=4)
    for name in ("w0", "w2"):  # half the weights in weights.bin, half in model.onnx
        external_data_helper.set_external_data(graphs.weights_by_name(model)[name], "weights.bin")
    v1 = version(tmp_path / "m" / "1", model)
    stored = onnx.load(str(v1 / "model.onnx"), load_external_data=False)
    assert [t.name for t in stored.graph.initializer if len(t.raw_data) >= 2**16] == ["w1", "w3"]
    expected = reference(v1)
    assert_first_load_shares(v1, tmp_path / "cache", expected)


@pytest.mark.parametrize("data_files", [False, True])
def test_a_model_file_that_links_elsewhere_shares(tmp_path, data_files):
    """ORT maps a skeleton's weights only from a file inside the folder it is given: a linked
    model file is read where it really is (or, with data files beside the link, by ORT)."""
    external = {"save_as_external_data": True, "location": "weights.bin", "size_threshold": 2**17}
    store = version(tmp_path / "store", mlp_model(width=WIDTH, layers=4),
                    **(external if data_files else {}))  # fmt: skip
    v1 = tmp_path / "m" / "1"
    v1.mkdir(parents=True)
    (v1 / "model.onnx").symlink_to(store / "model.onnx")
    if data_files:
        (store / "weights.bin").rename(v1 / "weights.bin")
    expected = reference(v1)
    assert_first_load_shares(v1, tmp_path / "cache", expected)


def test_a_file_that_is_not_a_model_fails_its_load(tmp_path):
    v1 = tmp_path / "m" / "1"
    v1.mkdir(parents=True)
    (v1 / "model.onnx").write_bytes(b"\x0f" * 2**21)  # above the threshold: would share
    runtime = OnnxRuntime(v1, ModelSettings(), CompileCache(tmp_path / "cache", key=KEY))
    with pytest.raises(VersionFailed) as failed:
        runtime.load()
    assert failed.value.reason == "load_error"
    assert not entries(tmp_path / "cache")


PEAK = """
import ctypes, gc, sys
from pathlib import Path
import onnxruntime as ort
from baton.dev.demo import affine_model
from baton.runtimes.compile_cache import CompileCache
from baton.runtimes.onnx import OnnxRuntime
from baton.settings import ModelSettings

def status(field):
    line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024

ort.InferenceSession(affine_model(1.0).SerializeToString(), providers=["CPUExecutionProvider"])
gc.collect()
ctypes.CDLL("libc.so.6").malloc_trim(0)
Path("/proc/self/clear_refs").write_text("5")  # the peak starts from here
base = status("VmRSS")
cache = CompileCache(Path(sys.argv[1]), key=bytes.fromhex(sys.argv[2]))
runtime = OnnxRuntime(Path(sys.argv[3]), ModelSettings(), cache)
runtime.load()
print(runtime.compile_outcome, status("VmHWM") - base)
"""


def peak(cache_dir: Path, path: Path) -> tuple[str, int]:
    """(outcome, peak resident set above a warm process with no model) of a load, alone in a
    fresh process (one with the default sharing threshold of 16 MiB)."""
    out = subprocess.run([sys.executable, "-c", PEAK, str(cache_dir), KEY.hex(), str(path)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    outcome, extra = out.stdout.split()
    return outcome, int(extra)


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs clear_refs")
def test_a_first_load_holds_the_model_once_not_twice(tmp_path):
    """Building a packed entry peaked at twice the model (onnx.load, and ORT parsing a file
    that embeds its weights, both hold them twice); now ORT maps them from the file."""
    v1 = version(tmp_path / "a" / "1", affine_model(1.0, padding_floats=8 * 2**20))  # 32 MiB
    size = (v1 / "model.onnx").stat().st_size
    outcome, extra = peak(tmp_path / "cache", v1)
    assert outcome == "miss" and extra < 1.3 * size, extra / size
    outcome, extra = peak(tmp_path / "cache", v1)
    assert outcome == "hit" and extra < 0.3 * size, extra / size
    # a weights-only update (a structure hit) of a model whose MatMul weights are pre-packed:
    # their packed copies are on the heap until the entry is written, the originals mapped
    base = mlp_model(width=1024, layers=8)  # 32 MiB
    load(version(tmp_path / "m" / "1", base), tmp_path / "cache")
    v2 = version(tmp_path / "m" / "2", with_new_head(base, 3))
    outcome, extra = peak(tmp_path / "cache", v2)
    assert outcome == "hit" and extra < 1.4 * size, extra / size
    x = {"x": np.ones((2, 1024), np.float32)}
    session = ort.InferenceSession(str(v2 / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(load(v2, tmp_path / "cache").predict(x, None)["y"],
                               session.run(None, x)[0], rtol=1e-5, atol=1e-5)  # fmt: skip
