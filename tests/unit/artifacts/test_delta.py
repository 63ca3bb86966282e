"""Delta versions: only changed weights are stored, the server rebuilds and checks the result."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from baton.artifacts.files import VersionFiles, fingerprint
from baton.artifacts.manifest import MANIFEST, hash_file, read_manifest
from baton.artifacts.publish import PublishError, publish
from baton.artifacts.verify import verify_version
from baton.dev.demo import mlp_model, with_new_head
from baton.errors import VersionFailed


@pytest.fixture
def repo(tmp_path):
    """Version 1 (full) and version 2 (a delta from 1 with a new head layer) of model m."""
    base = mlp_model(width=128, layers=4)
    (tmp_path / "v1.onnx").write_bytes(base.SerializeToString())
    (tmp_path / "v2.onnx").write_bytes(with_new_head(base, 7).SerializeToString())
    repo = tmp_path / "repo"
    publish(tmp_path / "v1.onnx", repo, "m")
    publish(tmp_path / "v2.onnx", repo, "m", delta_from=1)
    return repo


def verify(directory: Path) -> dict:
    return verify_version(VersionFiles(directory, fingerprint(directory)))


def test_a_delta_stores_only_what_changed_and_rebuilds_the_exact_model(tmp_path, repo):
    v2 = repo / "m" / "2"
    assert sorted(p.name for p in v2.iterdir()) == [MANIFEST, "delta.onnx"]
    body = read_manifest(v2).body
    assert body["parent"] == 1 and body["delta"]["base"] == 1
    assert body["delta"]["reused"] == ["w0", "b0", "w1", "b1", "w2", "b2", "b3"]
    full = (tmp_path / "v2.onnx").stat().st_size
    assert (v2 / "delta.onnx").stat().st_size < full / 3  # one of four layers
    facts = verify(v2)
    rebuilt = facts["load_from"] / "model.onnx"
    try:
        assert rebuilt.read_bytes() == onnx.load(str(tmp_path / "v2.onnx")).SerializeToString()
        x = np.random.default_rng(0).standard_normal((2, 128)).astype(np.float32)
        answer = ort.InferenceSession(str(rebuilt)).run(None, {"x": x})[0]
        expected = ort.InferenceSession(str(tmp_path / "v2.onnx")).run(None, {"x": x})[0]
        np.testing.assert_array_equal(answer, expected)
    finally:
        rebuilt.unlink()
        facts["load_from"].rmdir()


def reason(directory: Path) -> str:
    with pytest.raises(VersionFailed) as failed:
        verify(directory)
    return failed.value.reason


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_missing_base_is_refused(repo):
    for f in (repo / "m" / "1").iterdir():
        f.unlink()
    (repo / "m" / "1").rmdir()
    assert reason(repo / "m" / "2") == "delta_base_missing"


def test_an_altered_base_is_refused(repo):
    flip_byte(repo / "m" / "1" / "model.onnx")
    assert reason(repo / "m" / "2") == "delta_base_altered"


def test_a_base_republished_under_the_same_number_is_refused(tmp_path, repo):
    manifest = json.loads((repo / "m" / "1" / MANIFEST).read_text())
    manifest["body"]["description"] = "republished"
    (repo / "m" / "1" / MANIFEST).write_text(json.dumps(manifest))
    assert reason(repo / "m" / "2") == "delta_base_altered"


def test_a_delta_whose_rebuilt_model_is_not_the_declared_one_is_refused(repo):
    v2 = repo / "m" / "2"
    delta = onnx.load(str(v2 / "delta.onnx"))
    head = delta.graph.initializer[0]
    head.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(head) * 2, head.name))
    (v2 / "delta.onnx").write_bytes(delta.SerializeToString())
    doc = json.loads((v2 / MANIFEST).read_text())  # a consistent, unsigned manifest
    entry = hash_file(v2 / "delta.onnx")
    doc["body"]["files"]["delta.onnx"] = {"size": entry.size, "sha256": entry.sha256}
    (v2 / MANIFEST).write_text(json.dumps(doc))
    assert reason(v2) == "delta_mismatch"
    flip_byte(v2 / "delta.onnx")
    assert reason(v2) == "hash_mismatch"  # the delta file itself is checked first


def test_deltas_need_a_published_full_base(tmp_path, repo):
    with pytest.raises(PublishError, match="not a full ONNX version"):
        publish(tmp_path / "v2.onnx", repo, "m", delta_from=2)
    with pytest.raises(PublishError, match="does not exist"):
        publish(tmp_path / "v2.onnx", repo, "m", delta_from=9)
    (repo / "m" / "0").mkdir()
    with pytest.raises(PublishError, match="has no manifest"):
        publish(tmp_path / "v2.onnx", repo, "m", delta_from=0)
    (repo / "m" / "0").rmdir()
    assert sorted(p.name for p in (repo / "m").iterdir()) == ["1", "2"]
