"""Small ONNX models made with ``onnx.helper`` for the demo repository, tests and benchmarks.

:func:`affine_model` computes ``y = x * scale + offset`` on ``x: FP32[-1, width]``, so a version
can be recognised by its output; :func:`write_version` publishes one atomically (write to a
hidden directory, then rename).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "affine_model",
    "fragile_model",
    "identity_model",
    "mlp_model",
    "running_sum_model",
    "slow_model",
    "with_new_head",
    "write_demo_repository",
    "write_version",
]

OPSET = 17


def affine_model(
    offset: float,
    *,
    scale: float = 1.0,
    width: int = 4,
    padding_floats: int = 0,
    input_name: str = "x",
    datatype: int = TensorProto.FLOAT,
) -> onnx.ModelProto:
    """``y = x * scale + offset``; ``padding_floats`` adds an unused initializer to set the size."""
    np_type = helper.tensor_dtype_to_np_dtype(datatype)
    inits = [
        numpy_helper.from_array(np.full((width,), scale, np_type), "scale"),
        numpy_helper.from_array(np.full((width,), offset, np_type), "offset"),
    ]
    nodes = [
        helper.make_node("Mul", [input_name, "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "offset"], ["y"]),
    ]
    if padding_floats:
        # Read through a Gather whose index depends on the input, so graph optimisation cannot
        # fold the initializer away: the model really holds ``padding_floats`` floats.
        pad = (
            np.random.default_rng(int(abs(offset) * 1000) % 2**32)
            .standard_normal(padding_floats)
            .astype(np.float32)
        )
        inits += [
            numpy_helper.from_array(pad, "padding"),
            numpy_helper.from_array(np.array(0.0, np_type), "zero"),
        ]
        nodes += [
            helper.make_node("ReduceSum", [input_name], ["total"], keepdims=0),
            helper.make_node("Mul", ["total", "zero"], ["nothing"]),
            helper.make_node("Cast", ["nothing"], ["index"], to=TensorProto.INT64),
            helper.make_node("Gather", ["padding", "index"], ["checksum"]),
        ]
    outputs = [helper.make_tensor_value_info("y", datatype, ["batch", width])]
    if padding_floats:
        outputs.append(helper.make_tensor_value_info("checksum", TensorProto.FLOAT, []))
    graph = helper.make_graph(
        nodes,
        "affine",
        [helper.make_tensor_value_info(input_name, datatype, ["batch", width])],
        outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def fragile_model(offset: float, fail_above: float = 10.0, width: int = 4) -> onnx.ModelProto:
    """``y = x + offset`` that fails (ONNX Runtime raises) whenever any ``x`` reaches
    ``fail_above``: a Gather reads index ``floor(max(x) / fail_above)`` of a 1-element table.
    Warm-up's small synthetic inputs pass; large client inputs make the version error."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["x"], ["top"], keepdims=0),
            helper.make_node("Div", ["top", "limit"], ["scaled"]),
            helper.make_node("Floor", ["scaled"], ["floored"]),
            helper.make_node("Cast", ["floored"], ["index"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "index"], ["zero"]),
            helper.make_node("Add", ["x", "offset"], ["shifted"]),
            helper.make_node("Add", ["shifted", "zero"], ["y"]),
        ],
        "fragile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        [
            numpy_helper.from_array(np.array(fail_above, np.float32), "limit"),
            numpy_helper.from_array(np.zeros(1, np.float32), "table"),
            numpy_helper.from_array(np.full((width,), offset, np.float32), "offset"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def identity_model(datatypes: dict[str, int]) -> onnx.ModelProto:
    """One ``in_<name>`` → ``out_<name>`` Identity per entry (name → ONNX TensorProto type)."""
    nodes, inputs, outputs = [], [], []
    for name, dtype in datatypes.items():
        nodes.append(helper.make_node("Identity", [f"in_{name}"], [f"out_{name}"]))
        inputs.append(helper.make_tensor_value_info(f"in_{name}", dtype, ["n"]))
        outputs.append(helper.make_tensor_value_info(f"out_{name}", dtype, ["n"]))
    graph = helper.make_graph(nodes, "identity", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def mlp_model(width: int = 1024, layers: int = 4, seed: int = 0) -> onnx.ModelProto:
    """A compute-heavy model: ``layers`` x (``width``² MatMul + bias + Relu) on
    ``x: FP32[-1, width]`` → ``y: FP32[-1, width]`` (for batching benchmarks)."""
    rng = np.random.default_rng(seed)
    inits, nodes, current = [], [], "x"
    for i in range(layers):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(width, np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("MatMul", [current, f"w{i}"], [f"mm{i}"]),
            helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"pre{i}"]),
            helper.make_node("Relu", [f"pre{i}"], ["y" if i == layers - 1 else f"h{i}"]),
        ]
        current = f"h{i}"
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def slow_model(size: int = 256) -> onnx.ModelProto:
    """``n: INT64[1]`` → ``y: FP32[]``: ``n`` chained ``size``² matrix products in an ONNX Loop.

    The caller chooses how long a request computes (warm-up's ``n = 1`` is instant), which makes
    drain and shutdown tests deterministic. ``y`` is always 1.0.
    """
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["m_in", "w"], ["m_out"]),
        ],
        "step",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("m_in", TensorProto.FLOAT, [size, size]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("m_out", TensorProto.FLOAT, [size, size]),
        ],
    )
    graph = helper.make_graph(
        [
            helper.make_node("Squeeze", ["n", "axis0"], ["trips"]),
            helper.make_node("Loop", ["trips", "", "m0"], ["m"], body=body),
            helper.make_node("ReduceMean", ["m"], ["y"], keepdims=0),
        ],
        "slow",
        [helper.make_tensor_value_info("n", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        [
            numpy_helper.from_array(np.full((size, size), 1.0 / size, np.float32), "w"),
            numpy_helper.from_array(np.ones((size, size), np.float32), "m0"),
            numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def running_sum_model(constant: float, width: int = 64) -> onnx.ModelProto:
    """A stateful model: ``h_out = h_in + x * constant`` (every one of the ``width`` state
    floats), ``y = mean(h_out)``. Fed its previous ``h_out`` as ``h_in`` (``sequence.state``
    in model.yaml), ``y`` after n steps is ``constant * (x1 + ... + xn)``: each answer depends
    on the whole history, and on the version's ``constant``."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "constant"], ["step"]),
            helper.make_node("Add", ["h_in", "step"], ["h_out"]),
            helper.make_node("ReduceMean", ["h_out"], ["y"], axes=[1], keepdims=1),
        ],
        "running_sum",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("h_in", TensorProto.FLOAT, ["batch", width]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["batch", width]),
        ],
        [numpy_helper.from_array(np.array([constant], np.float32), "constant")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def write_version(model_dir: Path, version: int, model: onnx.ModelProto) -> Path:
    """Write ``model_dir/<version>/model.onnx`` atomically; returns the version directory."""
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".{version}.tmp"
    staging.mkdir(exist_ok=True)
    onnx.save(model, str(staging / "model.onnx"))
    final = model_dir / str(version)
    os.replace(staging, final)
    return final


def write_demo_repository(root: Path) -> None:
    """``root/demo`` with versions 1 and 2 (y = x + 1 and y = x + 2) and a model.yaml."""
    model_dir = Path(root) / "demo"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.yaml").write_text(
        "# Serve the newest version that loads; a retired version gets 10 s to finish requests.\n"
        "version_policy: {latest: 1}\n"
        "drain_timeout: 10s\n"
    )
    for version in (1, 2):
        if not (model_dir / str(version)).exists():
            write_version(model_dir, version, affine_model(float(version)))


def with_new_head(model: onnx.ModelProto, seed: int) -> onnx.ModelProto:
    """The same model with its last weight matrix retrained (the rest byte-identical): what a
    head-only fine-tune publishes, for delta updates."""
    changed = onnx.ModelProto()
    changed.CopyFrom(model)
    head = changed.graph.initializer[-2]  # w{last}; the bias stays the same
    values = numpy_helper.to_array(head)
    fresh = np.random.default_rng(seed).standard_normal(values.shape).astype(np.float32)
    head.CopyFrom(numpy_helper.from_array(fresh, head.name))
    return changed
