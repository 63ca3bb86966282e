"""Which backend serves a version directory, and what a missing framework says."""

import pytest

from baton.errors import VersionFailed
from baton.runtimes.common import declared_signature, require
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
