"""Reading a model without its weights: a skeleton whose large weights stay in ``model.onnx``,
which ORT maps from there, and whose structure and weights digest as the model's do."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from baton.dev.demo import affine_model, mlp_model
from baton.runtimes import onnx_graphs as graphs
from baton.runtimes import shared_weights

X = np.random.default_rng(0).standard_normal((3, 256)).astype(np.float32)


def saved(tmp_path: Path, model: onnx.ModelProto, **external) -> Path:
    path = tmp_path / "v" / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path), **external)
    return path


def run(model: bytes | str, folder: Path | None = None, **feed) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if folder is not None:
        options.add_session_config_entry(
            "session.model_external_initializers_file_folder_path", str(folder)
        )
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return session.run(None, feed or {"x": X})


def external(tensor: onnx.TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in tensor.external_data}


def test_a_skeleton_points_at_the_weights_in_the_model_file(tmp_path):
    path = saved(tmp_path, mlp_model(width=256, layers=3))
    full = onnx.load(str(path))
    skeleton = graphs.skeleton(path)
    data = path.read_bytes()
    large = 0
    for mine, theirs in zip(skeleton.graph.initializer, full.graph.initializer, strict=True):
        assert (mine.name, list(mine.dims), mine.data_type) == (
            theirs.name, list(theirs.dims), theirs.data_type)  # fmt: skip
        if len(theirs.raw_data) < shared_weights.MIN_EXTERNAL_BYTES:
            assert mine == theirs  # small ones stay in the graph
            continue
        large += 1
        info = external(mine)
        assert info["location"] == "model.onnx" and mine.data_location == TensorProto.EXTERNAL
        offset, length = int(info["offset"]), int(info["length"])
        assert data[offset : offset + length] == theirs.raw_data
    assert large == 3
    assert skeleton.ByteSize() < 16 * 1024  # the weights (768 KiB) are not in it
    assert graphs.structure_digest(skeleton) == graphs.structure_digest(full)
    assert graphs.external_files(skeleton, path.parent, path.name) == []
    ours = graphs.Weights.of(skeleton, path.parent, path.name)
    assert ours == graphs.Weights.of(full) and len(ours.values) == 6
    # ORT maps the weights from the model file, at offsets that are not page-aligned
    np.testing.assert_array_equal(run(skeleton.SerializeToString(), path.parent)[0],
                                  run(str(path))[0])  # fmt: skip


def test_a_skeleton_keeps_other_data_files_and_what_is_not_raw_data(tmp_path):
    model = mlp_model(width=256, layers=2)
    big = np.arange(2**15, dtype=np.float32)  # 128 KiB as float_data, not raw_data
    model.graph.initializer.append(helper.make_tensor("listed", TensorProto.FLOAT, big.shape, big))
    constant = helper.make_node("Constant", [], ["unused"], value=numpy_helper.from_array(big))
    model.graph.node.append(constant)
    path = saved(tmp_path, model)
    onnx.save(onnx.load(str(path)), str(path), save_as_external_data=True,
              location="weights.bin", size_threshold=200 * 1024)  # fmt: skip
    skeleton = graphs.skeleton(path)
    by_name = graphs.weights_by_name(skeleton)
    assert external(by_name["w0"])["location"] == "weights.bin"  # as the model says
    assert by_name["listed"].data_location == TensorProto.DEFAULT
    np.testing.assert_array_equal(numpy_helper.to_array(by_name["listed"]), big)
    assert skeleton.graph.node[-1] == constant  # tensors in attributes stay in the graph
    assert graphs.external_files(skeleton, path.parent, path.name) == [path.parent / "weights.bin"]
    assert graphs.Weights.of(skeleton, path.parent, path.name).values == {}  # not all ours
    np.testing.assert_array_equal(run(skeleton.SerializeToString(), path.parent)[0],
                                  run(str(path))[0])  # fmt: skip


def test_a_model_with_embedded_and_external_weights(tmp_path):
    path = saved(tmp_path, affine_model(1.0, padding_floats=2**17))
    model = onnx.load(str(path))
    model.graph.initializer.append(numpy_helper.from_array(np.ones(2**16, np.float32), "kept"))
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="more.bin", size_threshold=2**19)  # fmt: skip
    skeleton = graphs.skeleton(path)
    locations = {t.name: external(t).get("location") for t in skeleton.graph.initializer}
    assert locations == {"scale": None, "offset": None, "padding": "more.bin",
                         "zero": None, "kept": "model.onnx"}  # fmt: skip
    assert graphs.external_files(skeleton, path.parent, path.name) == [path.parent / "more.bin"]
    x = np.full((1, 4), 2.0, np.float32)
    np.testing.assert_array_equal(run(skeleton.SerializeToString(), path.parent, x=x)[0], x + 1)


@pytest.mark.parametrize(
    "content",
    [b"not an onnx model at all", b"\x3a\xff\xff\xff\x7f", b"\x0f" * 100, b"\x3a\x05\x2a\x10"],
)
def test_what_is_not_a_model_is_refused(tmp_path, content):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(ValueError):
        graphs.skeleton(path)


def test_a_truncated_model_is_refused(tmp_path):
    path = saved(tmp_path, mlp_model(width=256, layers=2))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        graphs.skeleton(path)
