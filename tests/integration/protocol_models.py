"""The model repository the protocol tests (HTTP and gRPC) serve, and every v2 datatype with
its ONNX and numpy types and sample values for round-trip tests."""

from pathlib import Path

import numpy as np
from onnx import TensorProto

from baton.dev.demo import affine_model, identity_model, write_version

# v2 datatype -> (ONNX type, sample values)
TYPES = {
    "BOOL": (TensorProto.BOOL, [True, False, True]),
    "UINT8": (TensorProto.UINT8, [0, 7, 255]),
    "UINT16": (TensorProto.UINT16, [0, 7, 65535]),
    "UINT32": (TensorProto.UINT32, [0, 7, 2**32 - 1]),
    "UINT64": (TensorProto.UINT64, [0, 7, 2**64 - 1]),
    "INT8": (TensorProto.INT8, [-128, 0, 127]),
    "INT16": (TensorProto.INT16, [-32768, 0, 32767]),
    "INT32": (TensorProto.INT32, [-(2**31), 0, 2**31 - 1]),
    "INT64": (TensorProto.INT64, [-(2**63), 0, 2**63 - 1]),
    "FP16": (TensorProto.FLOAT16, [-1.5, 0.0, 2.0]),
    "FP32": (TensorProto.FLOAT, [-1.5, 0.0, 2.5]),
    "FP64": (TensorProto.DOUBLE, [-1.5, 0.0, 1e300]),
    "BYTES": (TensorProto.STRING, ["a", "", "héllo wörld"]),
}
NUMPY = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}


def write_protocol_repository(repo: Path) -> Path:
    """``affine`` v1 (y = x + 1, labelled ``stable``) and v2 (y = x + 2); ``types`` (identity of
    every datatype); ``spare`` (y = x + 7, for load/unload)."""
    write_version(repo / "affine", 1, affine_model(1.0))
    write_version(repo / "affine", 2, affine_model(2.0))
    (repo / "affine" / "model.yaml").write_text("labels: {stable: 1}\n")
    write_version(repo / "types", 1, identity_model({k: v[0] for k, v in TYPES.items()}))
    write_version(repo / "spare", 1, affine_model(7.0))
    return repo
