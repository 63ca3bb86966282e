"""Open Inference Protocol tensor encodings ↔ numpy, shared by HTTP, gRPC and warm-up files.

Two forms: JSON ``data`` (a flat or nested list in row-major order) and raw bytes (the binary
tensor data extension and gRPC ``raw_*_contents``): fixed-size types as little-endian row-major
bytes, BYTES as a 4-byte little-endian length before each element. Raw decoding does not copy.
Every malformed tensor raises :class:`baton.errors.InvalidRequest` naming the tensor.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from baton.errors import InvalidRequest
from baton.types import DATATYPES

__all__ = ["decode_json", "decode_raw", "element_count", "encode_json", "encode_raw"]

_LEN = struct.Struct("<I")
#: The most elements one tensor may declare (checked before anything is allocated for it).
MAX_ELEMENTS = 2**31
#: The most dimensions a tensor's shape may have (numpy itself stops at 64).
MAX_DIMS = 32
# Which kinds numpy infers from JSON values may be cast to each target kind.
_ACCEPTS = {"b": "b", "i": "iu", "u": "iu", "f": "biuf"}


def element_count(name: str, shape: object) -> int:
    """Validate a v2 shape (a list of at most :data:`MAX_DIMS` non-negative ints) and return
    its element count; anything else raises InvalidRequest."""
    if not isinstance(shape, list | tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidRequest(f"tensor '{name}': shape must be a list of non-negative integers")
    if len(shape) > MAX_DIMS:
        raise InvalidRequest(
            f"tensor '{name}': shape has {len(shape)} dimensions; at most {MAX_DIMS} are accepted"
        )
    count = math.prod(shape)
    if count > MAX_ELEMENTS:
        raise InvalidRequest(
            f"tensor '{name}': shape {list(shape)} declares {count} elements; "
            f"at most {MAX_ELEMENTS} are accepted"
        )
    return count


def _nesting(data: list) -> int:
    """How deeply ``data`` nests lists, following first elements (cheap; numpy checks the
    rest when it builds the array)."""
    depth = 0
    while isinstance(data, list):
        depth += 1
        if not data:
            break
        data = data[0]
    return depth


def _check_datatype(name: str, datatype: object) -> np.dtype:
    try:
        return DATATYPES[datatype]  # type: ignore[index]
    except (KeyError, TypeError):
        raise InvalidRequest(f"tensor '{name}': unknown datatype {datatype!r}") from None


def decode_json(name: str, datatype: str, shape: list[int], data: object) -> np.ndarray:
    """A tensor from its JSON ``data``; checks datatype, element kind and element count."""
    dtype = _check_datatype(name, datatype)
    count = element_count(name, shape)
    if not isinstance(data, list):
        data = [data]
    if _nesting(data) > max(len(shape), 1):
        raise InvalidRequest(
            f"tensor '{name}': data nests deeper than its shape {list(shape)} allows"
        )
    try:
        if datatype == "BYTES":
            flat = np.array(data, dtype=object).reshape(-1)
            if not all(isinstance(v, str | bytes) for v in flat):
                raise InvalidRequest(f"tensor '{name}': BYTES elements must be strings")
            array = (
                np.array(
                    [v.encode("utf-8") if isinstance(v, str) else v for v in flat], dtype=object
                )
                if flat.size
                else np.empty(0, dtype=object)
            )
        else:
            array = _numeric(name, datatype, dtype, data)
    except InvalidRequest:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidRequest(
            f"tensor '{name}': data is not a valid {datatype} array: {exc}"
        ) from None
    if array.size != count:
        raise InvalidRequest(
            f"tensor '{name}': shape {list(shape)} needs {count} elements, data has {array.size}"
        )
    return array.reshape(shape)


def _numeric(name: str, datatype: str, dtype: np.dtype, data: list) -> np.ndarray:
    inferred = np.array(data)
    if datatype == "BF16":
        f32 = inferred.astype(np.float32).reshape(-1)
        return (f32.view(np.uint32) >> 16).astype(np.uint16)
    kind = inferred.dtype.kind
    if inferred.size and kind not in _ACCEPTS[dtype.kind]:
        # Python ints beyond int64 (e.g. UINT64 near 2**64) make numpy infer floats or objects.
        if dtype.kind in "iu" and kind in "fO":
            exact = _exact_integers(data, dtype)
            if exact is not None:
                return exact
        wanted = (
            "booleans" if dtype.kind == "b" else "integers" if dtype.kind in "iu" else "numbers"
        )
        raise InvalidRequest(f"tensor '{name}': {datatype} data must hold {wanted}")
    if dtype.kind in "iu" and inferred.size and kind in "iu":
        info = np.iinfo(dtype)
        if inferred.min() < info.min or inferred.max() > info.max:
            raise InvalidRequest(f"tensor '{name}': values out of range for {datatype}")
    return inferred.astype(dtype, copy=False).reshape(-1)


def _exact_integers(data: list, dtype: np.dtype) -> np.ndarray | None:
    flat = np.array(data, dtype=object).reshape(-1)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        return None
    info = np.iinfo(dtype)
    if any(v < info.min or v > info.max for v in flat):
        return None
    return flat.astype(dtype)


def decode_raw(name: str, datatype: str, shape: list[int], raw: bytes | memoryview) -> np.ndarray:
    """A tensor from raw bytes without copying (fixed-size types); checks the byte count."""
    dtype = _check_datatype(name, datatype)
    count = element_count(name, shape)
    if datatype == "BYTES":
        items = _split_bytes(name, raw)
        if len(items) != count:
            raise InvalidRequest(
                f"tensor '{name}': shape {list(shape)} needs {count} elements, "
                f"data has {len(items)}"
            )
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InvalidRequest(
            f"tensor '{name}': shape {list(shape)} of {datatype} needs {expected} bytes, "
            f"got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)


def _split_bytes(name: str, raw: bytes | memoryview) -> list[bytes]:
    view = memoryview(raw)
    items: list[bytes] = []
    offset, end = 0, len(view)
    while offset < end:
        if offset + 4 > end:
            raise InvalidRequest(f"tensor '{name}': BYTES data ends inside a length prefix")
        (length,) = _LEN.unpack_from(view, offset)
        offset += 4
        if offset + length > end:
            raise InvalidRequest(f"tensor '{name}': BYTES element runs past the end of the data")
        items.append(bytes(view[offset : offset + length]))
        offset += length
    return items


def encode_raw(array: np.ndarray, datatype: str) -> bytes:
    """Raw bytes of a tensor (row-major, little-endian; BYTES length-prefixed)."""
    if datatype == "BYTES":
        parts = []
        for item in array.reshape(-1):
            b = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(_LEN.pack(len(b)))
            parts.append(b)
        return b"".join(parts)
    return np.ascontiguousarray(array).tobytes()


def encode_json(array: np.ndarray, datatype: str, name: str) -> object:
    """A flat row-major value for a JSON ``data`` field (numpy arrays serialise via orjson)."""
    if datatype == "BYTES":
        try:
            return [
                item.decode("utf-8") if isinstance(item, bytes) else str(item)
                for item in array.reshape(-1)
            ]
        except UnicodeDecodeError:
            raise InvalidRequest(
                f"output '{name}' holds bytes that are not UTF-8; request it with binary_data"
            ) from None
    if datatype == "BF16":
        return (array.astype(np.uint32) << 16).view(np.float32).reshape(-1)
    return np.ascontiguousarray(array).reshape(-1)
