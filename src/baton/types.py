"""Value objects shared across the pipeline: tensor specs, signatures and v2 datatypes.

The Open Inference Protocol names datatypes as strings (``FP32``, ``BYTES``, ...). Baton keeps
tensors as numpy arrays; BYTES tensors are object arrays of ``bytes``. ``BF16`` travels as its
raw 16-bit pattern in a ``uint16`` array tagged with the v2 name, because numpy has no bfloat16.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DATATYPES",
    "Signature",
    "TensorSpec",
    "datatype_of",
    "is_digits",
    "numpy_dtype",
]

#: v2 datatype name -> numpy dtype (BYTES is an object array of ``bytes``).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
    "BF16": np.dtype(np.uint16),
}

_BY_NUMPY: dict[np.dtype, str] = {
    dt: name for name, dt in DATATYPES.items() if name not in ("BF16",)
}


def is_digits(text: str) -> bool:
    """True when ``text`` is one or more ASCII digits, what ``int(text)`` always parses.

    ``str.isdigit`` alone also accepts superscripts and other Unicode digits (``"⁰"``) that
    ``int`` refuses, so every number read from a path, a header, a query or a key uses this.
    """
    return text.isascii() and text.isdigit()


def numpy_dtype(datatype: str) -> np.dtype:
    """Numpy dtype for a v2 datatype name; raises ``KeyError`` for an unknown name."""
    return DATATYPES[datatype]


def datatype_of(array: np.ndarray) -> str:
    """v2 datatype name for a numpy array (``str``/``bytes``/object arrays are BYTES)."""
    if array.dtype.kind in ("O", "S", "U"):
        return "BYTES"
    try:
        return _BY_NUMPY[array.dtype]
    except KeyError:
        raise TypeError(
            f"numpy dtype {array.dtype} has no Open Inference Protocol datatype"
        ) from None


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One named input or output: v2 datatype and shape, ``-1`` for a dynamic dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True, slots=True)
class Signature:
    """A model version's inputs and outputs, in the model's own order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((t for t in self.outputs if t.name == name), None)

    def to_json(self) -> dict:
        return {
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }
