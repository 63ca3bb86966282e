"""Which backend serves a version directory, and what a missing framework says."""

import pytest

from baton.artifacts.files import VersionFiles
from baton.errors import VersionFailed
from baton.runtimes.common import declared_signature, import_class, require
from baton.runtimes.registry import backend_of
from baton.settings import ModelSettings, PythonSettings


@pytest.mark.parametrize(
    ("files", "settings", "backend"),
    [
        (["model.onnx"], {}, "onnx"),
        (["model.pt"], {}, "torchscript"),
        (["model.pt2"], {}, "torch_export"),
        (["weights.safetensors", "labels.txt"], {}, "torch_weights"),
        (["weights.pt"], {}, "torch_weights"),
        (["saved_model.pb", "variables/x"], {}, "tensorflow"),
        (["model.json", "model.pdiparams"], {}, "paddle"),
        (["model.engine"], {}, "tensorrt"),
        (["offset.txt"], {"python": PythonSettings(handler="h.py:H")}, "python"),
        (["model.onnx"], {"backend": "python"}, "python"),  # model.yaml wins over files
    ],
)
def test_backend_of(tmp_path, files, settings, backend):
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert backend_of(tmp_path, ModelSettings(**settings)) == backend


def test_unknown_files_name_what_was_expected(tmp_path):
    (tmp_path / "readme.md").write_text("hi")
    with pytest.raises(VersionFailed, match=r"model\.onnx") as failed:
        backend_of(tmp_path, ModelSettings())
    assert failed.value.reason == "no_model_file"


def test_a_missing_framework_names_the_extra_to_install():
    with pytest.raises(VersionFailed, match=r"pip install 'baton\[paddle\]'") as failed:
        require("surely_not_installed_pkg", "paddle", "PaddlePaddle")
    assert failed.value.reason == "backend_unavailable"


def test_declared_signatures_need_datatypes_and_shapes():
    with pytest.raises(VersionFailed, match="inputs declared"):
        declared_signature(ModelSettings(), "TorchScript")
    partial = ModelSettings(inputs=[{"name": "x"}], outputs=[{"name": "y"}])
    with pytest.raises(VersionFailed, match="needs a datatype and a shape"):
        declared_signature(partial, "TorchScript")
    full = ModelSettings(
        inputs=[{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        outputs=[{"name": "y", "datatype": "INT64", "shape": [-1]}],
    )
    sig = declared_signature(full, "TorchScript")
    assert [t.name for t in sig.inputs] == ["x"] and sig.outputs[0].datatype == "INT64"


HANDLER = "class Handler:\n    made_here = True\n"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("../evil.py:Handler", "must be a path inside the version"),
        ("/tmp/evil.py:Handler", "must be a path inside the version"),
        ("sub/../../evil.py:Handler", "must be a path inside the version"),
        ("link.py:Handler", "leads out of"),
        ("missing.py:Handler", "not found"),
        ("handler.py", "must look like 'module:Class'"),
    ],
)
def test_user_code_never_comes_from_outside_its_directories(tmp_path, spec, match):
    version = tmp_path / "m" / "1"
    version.mkdir(parents=True)
    (tmp_path / "evil.py").write_text(HANDLER)
    (tmp_path / "m" / "evil.py").write_text(HANDLER)
    (version / "link.py").symlink_to(tmp_path / "evil.py")
    with pytest.raises(VersionFailed, match=match):
        import_class(spec, [version])


def test_user_code_is_run_from_the_bytes_read_and_writes_no_bytecode(tmp_path):
    version = tmp_path / "1"
    (version / "pkg").mkdir(parents=True)
    (version / "pkg" / "handler.py").write_text(HANDLER)
    cls = import_class("pkg/handler.py:Handler", [version])
    assert cls.made_here
    assert sorted(p.name for p in version.rglob("*")) == ["handler.py", "pkg"]


def test_a_verified_version_imports_code_only_from_itself(tmp_path):
    version = tmp_path / "m" / "1"
    version.mkdir(parents=True)
    (tmp_path / "m" / "handler.py").write_text(HANDLER)  # beside model.yaml: not verified
    assert VersionFiles(version, "fp").code_dirs == (version, version.parent)
    verified = VersionFiles(version, "fp", verified=True)
    with pytest.raises(VersionFailed, match="not found"):
        import_class("handler.py:Handler", list(verified.code_dirs))
