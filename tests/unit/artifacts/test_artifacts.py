"""Manifests, signatures and publishing: every way a version can be wrong is refused, by name."""

import json
import shutil
from pathlib import Path

import onnx
import pytest

from baton.artifacts.files import VersionFiles, fingerprint
from baton.artifacts.manifest import MANIFEST, listed_files, read_manifest, write_manifest
from baton.artifacts.publish import PublishError, next_version, publish
from baton.artifacts.signing import TrustStore, generate_key_pair, load_private_key, sign_manifest
from baton.artifacts.verify import Verifier
from baton.dev.demo import affine_model
from baton.errors import VersionFailed
from baton.settings import ModelSettings


@pytest.fixture
def keys(tmp_path):
    """Two key pairs: ``ci`` (trusted) and ``other`` (not)."""
    return {name: generate_key_pair(tmp_path / name) for name in ("ci", "other")}


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(affine_model(1.0), str(path))
    return path


def check(directory: Path, trusted=(), require_signature=False, require_manifest=False,
          model: ModelSettings | None = None):  # fmt: skip
    """Verify as a server with these settings would, for a model with ``model`` settings."""
    verifier = Verifier(TrustStore(trusted), require_manifest, require_signature)
    files = VersionFiles(directory, fingerprint(directory) or "")
    facts = verifier(files, model or ModelSettings())
    copy = facts.pop("load_from", None)
    if copy is not None:  # the verified copy holds exactly the manifest's files
        if not facts["delta"]:
            assert listed_files(copy) == sorted(read_manifest(directory).files)
        shutil.rmtree(copy)
    return facts


def reason(directory: Path, **kwargs) -> str:
    with pytest.raises(VersionFailed) as failed:
        check(directory, **kwargs)
    return failed.value.reason


def test_publish_writes_files_and_a_manifest_that_verifies(tmp_path, model_file, keys):
    ticks = []
    path = publish(
        model_file, tmp_path / "repo", "m", sign_key=keys["ci"][0], description="first",
        progress=lambda done, total: ticks.append((done, total)),
    )  # fmt: skip
    assert path == tmp_path / "repo" / "m" / "1"
    assert sorted(p.name for p in path.iterdir()) == [MANIFEST, "model.onnx"]
    body = read_manifest(path).body
    assert body["files"]["model.onnx"]["size"] == model_file.stat().st_size
    assert body["signature"]["inputs"][0] == {"name": "x", "datatype": "FP32", "shape": [-1, 4]}
    assert body["framework"] == "onnxruntime_onnx" and body["description"] == "first"
    assert ticks[-1] == (model_file.stat().st_size,) * 2
    facts = check(path, trusted=[keys["ci"][1]], require_signature=True)
    assert facts["manifest"] and facts["signed_by"]
    assert not [p for p in (tmp_path / "repo" / "m").iterdir() if p.name.startswith(".")]


def test_versions_are_numbered_in_order_and_never_overwritten(tmp_path, model_file):
    repo = tmp_path / "repo"
    assert [publish(model_file, repo, "m").name for _ in range(3)] == ["1", "2", "3"]
    assert next_version(repo / "m") == 4
    with pytest.raises(PublishError, match="already exists"):
        publish(model_file, repo, "m", version=2)


def test_a_model_that_does_not_load_is_not_published(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(PublishError, match="not a model Baton can load"):
        publish(junk, tmp_path / "repo", "m")
    assert list((tmp_path / "repo" / "m").iterdir()) == []  # the staging directory is gone


def test_unknown_file_types_and_empty_directories_are_refused(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PublishError, match="unknown model file type"):
        publish(tmp_path / "weights.bin", tmp_path / "repo", "m")
    with pytest.raises(PublishError, match="holds no files"):
        publish(tmp_path / "empty", tmp_path / "repo", "m")


@pytest.fixture
def published(tmp_path, model_file, keys):
    """A signed version with a second file, to tamper with."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "model.onnx").write_bytes(model_file.read_bytes())
    (source / "vocab.txt").write_text("a\nb\nc\n")
    return publish(source, tmp_path / "repo", "m", sign_key=keys["ci"][0])


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (lambda d: (d / "vocab.txt").unlink(), "missing_file"),
        (lambda d: (d / "vocab.txt").write_text("a\nb\n"), "size_mismatch"),  # truncated
        (lambda d: flip_byte(d / "model.onnx"), "hash_mismatch"),
        (lambda d: (d / "extra.py").write_text("import os"), "unexpected_file"),
        (lambda d: (d / MANIFEST).write_text("{"), "bad_manifest"),
        (lambda d: (d / MANIFEST).write_text('{"format": "other"}'), "bad_manifest"),
    ],
    ids=["missing", "truncated", "flipped-byte", "extra-file", "torn-manifest", "foreign"],
)
def test_tampered_files_are_refused_by_name(published, tamper, expected):
    tamper(published)
    assert reason(published) == expected


def test_a_manifest_without_its_files(tmp_path, published):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / MANIFEST).write_bytes((published / MANIFEST).read_bytes())
    assert reason(bare) == "missing_file"


def test_files_without_a_manifest_when_one_is_required(tmp_path, model_file):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "model.onnx").write_bytes(model_file.read_bytes())
    assert check(plain) == {"manifest": False, "signed_by": None, "delta": False, "digest": None}
    assert reason(plain, require_manifest=True) == "missing_manifest"
    assert reason(plain, model=ModelSettings(require_manifest=True)) == "missing_manifest"
    assert reason(plain, require_signature=True) == "unsigned"


def test_signature_requirements(tmp_path, model_file, keys, published):
    ci, other = keys["ci"][1], keys["other"][1]
    unsigned = publish(model_file, tmp_path / "repo", "m")
    by_other = publish(model_file, tmp_path / "repo", "m", sign_key=keys["other"][0])
    assert reason(unsigned, trusted=[ci], require_signature=True) == "unsigned"
    assert reason(by_other, trusted=[ci], require_signature=True) == "untrusted_key"
    assert check(by_other, trusted=[ci])["signed_by"] is None  # not required: as unsigned
    assert check(unsigned, trusted=[ci])["signed_by"] is None
    # a model can require what the server does not
    assert reason(unsigned, trusted=[ci], model=ModelSettings(require_signature=True)) == (
        "unsigned"
    )
    # key rotation: both keys trusted, either signature is accepted
    ci_id = check(published, trusted=[ci], require_signature=True)["signed_by"]
    other_id = check(by_other, trusted=[ci, other], require_signature=True)["signed_by"]
    assert ci_id and other_id and ci_id != other_id
    assert check(published, trusted=[other, ci], require_signature=True)["signed_by"] == ci_id


def test_a_signature_over_a_different_manifest_is_refused(tmp_path, model_file, keys):
    a = publish(model_file, tmp_path / "repo", "m", sign_key=keys["ci"][0], description="a")
    b = publish(model_file, tmp_path / "repo", "m", description="b")
    doc_a = json.loads((a / MANIFEST).read_text())
    doc_b = json.loads((b / MANIFEST).read_text())
    doc_b["signatures"] = doc_a["signatures"]  # a's signature pasted onto b's manifest
    (b / MANIFEST).write_text(json.dumps(doc_b))
    assert reason(b, trusted=[keys["ci"][1]]) == "bad_signature"  # even when not required


def test_editing_a_signed_manifest_breaks_its_signature(tmp_path, published, keys, model_file):
    manifest = read_manifest(published)
    manifest.body["description"] = "edited after signing"
    write_manifest(published, manifest)
    assert reason(published, trusted=[keys["ci"][1]]) == "bad_signature"
    sign_manifest(manifest, load_private_key(keys["other"][0]))  # a second, untrusted signer
    assert reason(published, trusted=[keys["ci"][1]]) == "bad_signature"


def test_publish_loads_the_model_with_the_models_own_settings(tmp_path):
    """A custom Python model has no model file: only model.yaml says how to load it."""
    model_dir = tmp_path / "repo" / "m"
    model_dir.mkdir(parents=True)
    (model_dir / "model.yaml").write_text('python: {handler: "handler.py:Handler"}\n')
    (model_dir / "handler.py").write_text(
        "import numpy as np\n"
        "class Handler:\n"
        "    def load(self, path): self.offset = float((path / 'offset.txt').read_text())\n"
        "    def signature(self):\n"
        "        spec = {'datatype': 'FP32', 'shape': [-1, 4]}\n"
        "        return {'inputs': [{'name': 'x', **spec}], 'outputs': [{'name': 'y', **spec}]}\n"
        "    def predict(self, inputs): return {'y': inputs['x'] + self.offset}\n"
        "    def unload(self): pass\n"
    )
    source = tmp_path / "src"
    source.mkdir()
    (source / "offset.txt").write_text("2.0")
    version = publish(source, tmp_path / "repo", "m")
    body = read_manifest(version).body
    assert body["framework"] == "python" and body["signature"]["outputs"][0]["name"] == "y"


def test_a_hidden_file_in_a_signed_version_is_unexpected(tmp_path, keys, published):
    (published / ".payload.py").write_text("print('not listed')\n")
    assert reason(published, trusted=[keys["ci"][1]], require_signature=True) == ("unexpected_file")
    (published / ".payload.py").unlink()
    (published / ".cache").mkdir()
    (published / ".cache" / "x").write_text("x")
    assert reason(published, trusted=[keys["ci"][1]]) == "unexpected_file"


def test_code_named_in_model_yaml_must_be_the_signed_code(tmp_path, keys, model_file):
    repo = tmp_path / "repo"
    (repo / "m").mkdir(parents=True)
    (repo / "m" / "model.yaml").write_text("onnx: {intra_op_num_threads: 1}\n")
    version = publish(model_file, repo, "m", sign_key=keys["ci"][0])
    assert read_manifest(version).body["code"] == ModelSettings().code_config()
    trusted = [keys["ci"][1]]
    assert check(version, trusted=trusted, require_signature=True)["signed_by"]
    evil = ModelSettings.model_validate(
        {"backend": "python", "python": {"handler": "os:system", "kwargs": {"command": "id"}}}
    )
    assert reason(version, trusted=trusted, require_signature=True, model=evil) == (
        "unsigned_config"
    )
    # a manifest that records code always binds it, signatures required or not
    assert reason(version, trusted=trusted, model=evil) == "unsigned_config"
    # an older manifest without a code record: under require_signature, model.yaml may name none
    manifest = read_manifest(version)
    del manifest.body["code"]
    write_manifest(version, manifest)  # (the signature no longer matches, so sign again)
    sign_manifest(manifest, load_private_key(keys["ci"][0]))
    manifest.signatures = manifest.signatures[-1:]
    write_manifest(version, manifest)
    assert check(version, trusted=trusted, require_signature=True)["signed_by"]
    assert reason(version, trusted=trusted, require_signature=True, model=evil) == (
        "unsigned_config"
    )


def test_what_is_loaded_is_the_verified_copy(tmp_path, keys, published):
    verifier = Verifier(TrustStore([keys["ci"][1]]), require_signature=True)
    facts = verifier(VersionFiles(published, fingerprint(published)), ModelSettings())
    copy = facts["load_from"]
    try:
        assert copy.stat().st_mode & 0o777 == 0o700
        original = (copy / "vocab.txt").read_bytes()
        (published / "vocab.txt").write_text("swapped after the hash was taken\n")
        assert (copy / "vocab.txt").read_bytes() == original
    finally:
        shutil.rmtree(copy)
