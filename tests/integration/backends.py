"""Versions of one model, y = x + offset on FP32[-1, 4], for every backend: what the shared
behavioural suite (test_backends.py) serves.

Frameworks must not share a process (importing TensorFlow after torch can crash it), so
:func:`build` writes versions in a subprocess of their own, as hidden ``.pending-<version>``
directories, and :func:`reveal` renames one into place when the test wants it to appear.

    python -m tests.integration.backends BACKEND MODEL_DIR '[[version, offset, {kwargs}], ...]'
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from baton.dev.demo import affine_model

DECLARED = (
    "inputs: [{name: x, datatype: FP32, shape: [-1, 4]}]\n"
    "outputs: [{name: y, datatype: FP32, shape: [-1, 4]}]\n"
)

TORCH_NET = """
import torch


class Affine(torch.nn.Module):
    def __init__(self, width=4, padding=1):
        super().__init__()
        self.offset = torch.nn.Parameter(torch.zeros(width))
        self.padding = torch.nn.Parameter(torch.zeros(padding))  # sets the size

    def forward(self, x):
        return x + self.offset + self.padding[0] * 0
"""

HANDLER = """
import numpy as np


class Handler:
    def __init__(self, scale=1.0):
        self.scale = scale

    def load(self, path):
        offset, padding = (path / "offset.txt").read_text().split()
        self.offset = np.float32(float(offset))
        self.padding = np.ones(int(padding), np.float32)  # sets the size

    def signature(self):
        spec = {"datatype": "FP32", "shape": [-1, 4]}
        return {"inputs": [{"name": "x", **spec}], "outputs": [{"name": "y", **spec}]}

    def predict(self, inputs):
        return {"y": inputs["x"] * np.float32(self.scale) + self.offset}

    def unload(self):
        self.offset = self.padding = None
"""


def _staged(model_dir: Path, version: int, write: Callable[[Path], None]) -> Path:
    """Write a version into the hidden ``.pending-<version>`` (see :func:`reveal`)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".pending-{version}"
    staging.mkdir(parents=True)
    write(staging)
    return staging


def reveal(model_dir: Path, version: int) -> Path:
    """Publish a pending version: one atomic rename."""
    final = model_dir / str(version)
    (model_dir / f".pending-{version}").rename(final)
    return final


def build(backend: str, model_dir: Path, specs: list[tuple]) -> None:
    """Write pending versions ``[(version, offset, {kwargs}), ...]`` in a fresh interpreter."""
    subprocess.run(
        [sys.executable, "-m", "tests.integration.backends", backend, str(model_dir),
         json.dumps([list(spec) for spec in specs])],
        check=True, cwd=Path(__file__).resolve().parents[2], capture_output=True, timeout=600,
    )  # fmt: skip


def _torch_affine(offset: float, padding: int):
    import torch

    class Affine(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.offset = torch.nn.Parameter(torch.full((4,), offset))
            self.padding = torch.nn.Parameter(torch.ones(max(padding, 1)))

        def forward(self, x):
            return x + self.offset + self.padding[0] * 0

    return Affine().eval()


def onnx_version(model_dir: Path, version: int, offset: float, padding: int = 0) -> Path:
    model = affine_model(offset, padding_floats=padding)
    return _staged(model_dir, version, lambda d: onnx.save(model, str(d / "model.onnx")))


def torchscript_version(model_dir: Path, version: int, offset: float, padding: int = 0) -> Path:
    import torch

    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.yaml").write_text(DECLARED)
    module = torch.jit.script(_torch_affine(offset, padding))
    return _staged(model_dir, version, lambda d: torch.jit.save(module, str(d / "model.pt")))


def torch_export_version(model_dir: Path, version: int, offset: float, padding: int = 0) -> Path:
    import torch

    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.yaml").write_text("inputs: [{name: x}]\noutputs: [{name: y}]\n")
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(
        _torch_affine(offset, padding), (torch.zeros(2, 4),), dynamic_shapes={"x": {0: batch}}
    )
    return _staged(model_dir, version, lambda d: torch.export.save(program, str(d / "model.pt2")))


def torch_weights_version(
    model_dir: Path, version: int, offset: float, padding: int = 0,
    labels: list[str] | None = None, width: int = 4,
) -> Path:  # fmt: skip
    import torch
    from safetensors.torch import save_file

    size = max(padding, 1)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "net.py").write_text(TORCH_NET)
    (model_dir / "model.yaml").write_text(
        f'torch: {{module: "net.py:Affine", kwargs: {{padding: {size}}}}}\n' + DECLARED
    )

    def write(d: Path) -> None:
        weights = {"offset": torch.full((width,), offset), "padding": torch.ones(size)}
        save_file(weights, str(d / "weights.safetensors"))
        (d / "labels.txt").write_text("\n".join(labels or ["crack", "dent", "scratch"]) + "\n")

    return _staged(model_dir, version, write)


def python_version(model_dir: Path, version: int, offset: float, padding: int = 0) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "handler.py").write_text(HANDLER)
    (model_dir / "model.yaml").write_text('python: {handler: "handler.py:Handler"}\n')
    return _staged(
        model_dir, version, lambda d: (d / "offset.txt").write_text(f"{offset} {padding}")
    )


def _wire(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    return varint(number << 3 | 2) + varint(len(payload)) + payload


def write_tf_serving_warmup(saved_model: Path, shapes: list[list[int]]) -> None:
    """TF Serving's warm-up file: one PredictionLog per shape, input "x" filled with ones."""
    import tensorflow as tf

    (saved_model / "assets.extra").mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(
        str(saved_model / "assets.extra" / "tf_serving_warmup_requests")
    ) as w:
        for shape in shapes:
            tensor = tf.make_tensor_proto(np.ones(shape, np.float32)).SerializeToString()
            entry = _wire(1, b"x") + _wire(2, tensor)
            w.write(_wire(6, _wire(1, _wire(2, entry))))  # PredictionLog.predict_log.request


def tensorflow_version(
    model_dir: Path, version: int, offset: float, padding: int = 0,
    warmup_shapes: list[list[int]] | None = None,
) -> Path:  # fmt: skip
    import tensorflow as tf

    class Affine(tf.Module):
        def __init__(self):
            super().__init__()
            self.offset = tf.Variable(tf.fill([4], offset))
            self.padding = tf.Variable(tf.ones([max(padding, 1)]))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x + self.offset + self.padding[0] * 0}

    module = Affine()

    def write(d: Path) -> None:
        tf.saved_model.save(module, str(d), signatures={"serving_default": module.serve})
        if warmup_shapes:
            write_tf_serving_warmup(d, warmup_shapes)

    return _staged(model_dir, version, write)


def paddle_version(model_dir: Path, version: int, offset: float, padding: int = 0) -> Path:
    import paddle

    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.yaml").write_text(DECLARED)  # names and shapes: PIR reports neither
    layer = _paddle_affine(paddle, offset, padding)
    spec = [paddle.static.InputSpec([None, 4], "float32", "x")]
    return _staged(
        model_dir, version, lambda d: paddle.jit.save(layer, str(d / "model"), input_spec=spec)
    )


def _paddle_affine(paddle, offset: float, padding: int):
    constant = paddle.nn.initializer.Constant

    class Affine(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.offset = self.create_parameter([4], default_initializer=constant(offset))
            self.padding = self.create_parameter([max(padding, 1)], default_initializer=constant(1))

        def forward(self, x):
            return x + self.offset + self.padding[0] * 0

    layer = Affine()
    layer.eval()
    return layer


#: backend name → (version writer, the package it needs or None)
BACKENDS: dict[str, tuple[Callable[..., Path], str | None]] = {
    "onnx": (onnx_version, None),
    "torchscript": (torchscript_version, "torch"),
    "torch_export": (torch_export_version, "torch"),
    "torch_weights": (torch_weights_version, "torch"),
    "tensorflow": (tensorflow_version, "tensorflow"),
    "paddle": (paddle_version, "paddle"),
    "python": (python_version, None),
}


def installed(package: str | None) -> bool:
    return package is None or importlib.util.find_spec(package) is not None


def expected(x: np.ndarray, offset: float) -> np.ndarray:
    return x + np.float32(offset)


if __name__ == "__main__":
    name, directory, specs = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    for version, offset, kwargs in specs:
        BACKENDS[name][0](directory, version, offset, **kwargs)
