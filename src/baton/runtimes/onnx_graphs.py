"""Reading and rewriting ONNX graphs for the compile cache: the keys it stores entries under
(a model's contents, with its data files, or its structure without the weights' values),
whether the optimiser let every weight pass through unchanged, putting a model's weights into
a cached graph, and reading a large model without its weights (:func:`skeleton`)."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from baton.runtimes import shared_weights

__all__ = [
    "Weights",
    "contents_digest",
    "external_files",
    "skeleton",
    "structure_digest",
    "substituted",
    "uses",
    "values",
    "weights_by_name",
    "weights_pass_through",
    "without_values",
]


def weights_by_name(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


def uses(graph: onnx.GraphProto, names: set[str], counts: Counter | None = None) -> Counter:
    """How many node inputs (subgraphs included) read each of ``names``."""
    counts = Counter() if counts is None else counts
    for node in graph.node:
        counts.update(name for name in node.input if name in names)
        for attribute in node.attribute:
            for sub in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                uses(sub, names, counts)
    return counts


def values(
    model: onnx.ModelProto, base: Path | None = None, location: str = shared_weights.DATA
) -> dict[str, tuple] | None:
    """Each weight's shape, type and SHA-256 of its values (read from ``base / location`` when
    external: the data file of a packed entry, or the model file a :func:`skeleton` points
    into); ``None`` when a value is in another file."""
    out, files = {}, {}
    try:
        for t in model.graph.initializer:
            digest = hashlib.sha256()
            if t.data_location == onnx.TensorProto.EXTERNAL:
                info = {e.key: e.value for e in t.external_data}
                if base is None or info.get("location") != location:
                    return None
                if info["location"] not in files:
                    files[info["location"]] = os.open(base / info["location"], os.O_RDONLY)
                offset, length = int(info.get("offset", 0)), int(info["length"])
                _digest_region(digest, files[info["location"]], offset, length)
            elif t.HasField("raw_data"):
                digest.update(t.raw_data)
            else:
                digest.update(numpy_helper.to_array(t).tobytes())
            out[t.name] = (tuple(t.dims), t.data_type, digest.digest())
    finally:
        for fd in files.values():
            os.close(fd)
    return out


def _digest_region(digest, fd: int, offset: int, length: int) -> None:
    """Read in chunks, not mapped: a mapping would count the whole file as resident."""
    chunk = bytearray(min(length, 1 << 22))
    view = memoryview(chunk)
    while length > 0:
        n = os.preadv(fd, [view[: min(length, len(chunk))]], offset)
        if n <= 0:
            raise OSError(f"data file ends before offset {offset}")
        digest.update(view[:n])
        offset, length = offset + n, length - n


@dataclass(frozen=True, slots=True)
class Weights:
    """What the pass-through check needs of a model: its weights' values and how often each is
    read (so the model itself can be freed before ORT loads it)."""

    values: dict[str, tuple]
    uses: Counter

    @classmethod
    def of(cls, model: onnx.ModelProto, base: Path | None = None, location: str = "") -> Weights:
        """``model``'s; a :func:`skeleton`'s weights are read from ``base / location``, its file
        (a model with weights in other files has none: no weight passes through)."""
        found = values(model, base, location) or {}
        return cls(found, uses(model.graph, set(found)))


def weights_pass_through(
    weights: Weights, optimised: onnx.ModelProto, base: Path | None = None
) -> bool:
    """Did the optimiser keep every weight as it was, read as often as before?"""
    kept = values(optimised, base)
    return kept == weights.values and uses(optimised.graph, set(kept)) == weights.uses


def external_files(
    model: onnx.ModelProto, directory: Path, own: str | None = None
) -> list[Path] | None:
    """The data files ``model`` reads (sorted), or ``None`` when one is not a plain file in
    ``directory`` (ORT will refuse the model and say why). ``own``: the model file's name,
    which a :func:`skeleton` reads its weights from (not a data file of its own)."""
    names = {
        e.value
        for t in shared_weights.tensors(model.graph)
        if t.data_location == onnx.TensorProto.EXTERNAL
        for e in t.external_data
        if e.key == "location"
    } - {own}
    files = []
    for name in sorted(names):
        path = directory / name
        if os.sep in name or name.startswith(".") or not path.is_file():
            return None
        files.append(path)
    return files


def contents_digest(context: bytes, model_file: Path, externals: list[Path]) -> str:
    """SHA-256 of ``context``, the model file's bytes and its data files' names and bytes."""
    digest = hashlib.sha256(context)
    for i, path in enumerate([model_file, *externals]):
        if i:
            digest.update(f"|{path.name}|{path.stat().st_size}|".encode())
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def substituted(cached: onnx.ModelProto, model: onnx.ModelProto | None) -> bytes | None:
    """The cached graph, serialised, with ``model``'s weights put in by name when given
    (``None`` if ``model`` lacks one of them). From a :func:`skeleton`, the large weights go in
    as references to the model file, so the graph stays small."""
    if model is not None:
        weights = weights_by_name(model)
        if any(t.name not in weights for t in cached.graph.initializer):
            return None
        for t in cached.graph.initializer:
            t.CopyFrom(weights[t.name])
    return cached.SerializeToString()


# ---- reading a model without its weights ----------------------------------------------------
#: Field numbers (protobuf wire format) of ModelProto.graph, GraphProto.initializer and
#: TensorProto.raw_data: what :func:`skeleton` looks into.
_GRAPH, _INITIALIZER, _RAW_DATA = 7, 5, 9
_LENGTH_DELIMITED = 2
_FILE_BYTES = shared_weights.MIN_EXTERNAL_BYTES


def skeleton(model_file: Path) -> onnx.ModelProto:
    """``model_file`` with every weight of at least ``shared_weights.MIN_EXTERNAL_BYTES``
    stored in it (as ``raw_data``) made an external tensor in that very file, at its offset:
    a small message from which ORT, told the file's directory, maps those weights. Reads the
    rest of the file field by field and skips their bytes, so the model is never in memory
    (``onnx.load`` holds it twice while it parses it). Raises ``ValueError`` for a file that
    is not a well-formed ONNX model, ``OSError`` for one that cannot be read."""
    model, graph, tensors = bytearray(), bytearray(), []
    with open(model_file, "rb") as f:
        for number, wire, header, start, end in _fields(f, os.fstat(f.fileno()).st_size):
            if number != _GRAPH or wire != _LENGTH_DELIMITED:
                model += _read(f, header, end)
                continue
            for field, kind, at, value, stop in _fields(f, end, start):
                if field == _INITIALIZER and kind == _LENGTH_DELIMITED:
                    tensors.append(_tensor(f, value, stop, model_file.name))
                else:
                    graph += _read(f, at, stop)
    try:
        out = onnx.ModelProto.FromString(bytes(model))
        out.graph.MergeFromString(bytes(graph))
    except DecodeError as exc:
        raise ValueError(f"{model_file} is not an ONNX model: {exc}") from None
    out.graph.initializer.extend(tensors)
    return out


def _tensor(f, start: int, end: int, location: str) -> onnx.TensorProto:
    """The TensorProto in ``f[start:end]``, its large ``raw_data`` left in the file."""
    rest, found = bytearray(), None
    for number, wire, header, value, stop in _fields(f, end, start):
        if number == _RAW_DATA and wire == _LENGTH_DELIMITED and found is not None:
            raise ValueError("a tensor's raw_data appears twice")
        if number == _RAW_DATA and wire == _LENGTH_DELIMITED and stop - value >= _FILE_BYTES:
            found = (value, stop - value)
        else:
            rest += _read(f, header, stop)
    try:
        tensor = onnx.TensorProto.FromString(bytes(rest))
    except DecodeError as exc:
        raise ValueError(f"a weight is not a tensor: {exc}") from None
    if found is not None:
        tensor.ClearField("raw_data")
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, text in (("location", location), ("offset", found[0]), ("length", found[1])):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, str(text)
    return tensor


def _fields(f, end: int, start: int = 0):
    """Each field of the message in ``f[start:end]``: ``(number, wire type, where its tag
    starts, where its value starts, where it ends)``. The caller may read or move ``f``; the
    next field is read from where this one ends."""
    position = start
    while position < end:
        f.seek(position)
        tag = _read_varint(f)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _read_varint(f)
            length = 0
        elif wire == _LENGTH_DELIMITED:
            length = _read_varint(f)
        elif wire in (1, 5):
            length = 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire} is not used by ONNX")
        value = f.tell()
        if number == 0 or value + length > end:
            raise ValueError("a field runs past the end of its message")
        yield number, wire, position, value, value + length
        position = value + length


def _read_varint(f) -> int:
    result = shift = 0
    while shift < 64:
        byte = f.read(1)
        if not byte:
            raise ValueError("the file ends inside a field")
        result |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return result
        shift += 7
    raise ValueError("a varint longer than 64 bits")


def _read(f, start: int, end: int) -> bytes:
    f.seek(start)
    data = f.read(end - start)
    if len(data) != end - start:
        raise ValueError("the file ends inside a field")
    return data


def _without(message, skip: str):
    """A copy of a protobuf ``message`` without its field ``skip`` (the rest is small)."""
    bare = type(message)()
    for field, value in message.ListFields():
        if field.name == skip:
            continue
        if field.is_repeated:
            getattr(bare, field.name).extend(value)
        elif field.type == field.TYPE_MESSAGE:
            getattr(bare, field.name).CopyFrom(value)
        else:
            setattr(bare, field.name, value)
    return bare


def structure_digest(model: onnx.ModelProto) -> bytes:
    """SHA-256 of the model without its weights' values (names, shapes and types kept)."""
    digest = hashlib.sha256()
    for t in model.graph.initializer:
        digest.update(f"{t.name}|{list(t.dims)}|{t.data_type};".encode())
    bare = _without(model, "graph")
    bare.graph.CopyFrom(_without(model.graph, "initializer"))
    digest.update(bare.SerializeToString())
    return digest.digest()


def without_values(model: onnx.ModelProto) -> None:
    for t in model.graph.initializer:
        for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data",
                      "uint64_data", "string_data", "external_data", "data_location"):  # fmt: skip
            t.ClearField(field)
