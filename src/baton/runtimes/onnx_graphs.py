"""Reading and rewriting ONNX graphs for the compile cache: the keys it stores entries under
(a model's contents, with its data files, or its structure without the weights' values),
whether the optimiser let every weight pass through unchanged, and putting a model's weights
into a cached graph."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import numpy_helper

from baton.runtimes import shared_weights

__all__ = [
    "Weights",
    "contents_digest",
    "external_files",
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


def values(model: onnx.ModelProto, base: Path | None = None) -> dict[str, tuple] | None:
    """Each weight's shape, type and SHA-256 of its values (read from ``base`` when external);
    ``None`` when a value is in a file this cache did not write."""
    out, files = {}, {}
    try:
        for t in model.graph.initializer:
            digest = hashlib.sha256()
            if t.data_location == onnx.TensorProto.EXTERNAL:
                info = {e.key: e.value for e in t.external_data}
                if base is None or info.get("location") != shared_weights.DATA:
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
    def of(cls, model: onnx.ModelProto) -> Weights:
        found = values(model) or {}
        return cls(found, uses(model.graph, set(found)))


def weights_pass_through(
    weights: Weights, optimised: onnx.ModelProto, base: Path | None = None
) -> bool:
    """Did the optimiser keep every weight as it was, read as often as before?"""
    kept = values(optimised, base)
    return kept == weights.values and uses(optimised.graph, set(kept)) == weights.uses


def external_files(model: onnx.ModelProto, directory: Path) -> list[Path] | None:
    """The data files ``model`` reads (sorted), or ``None`` when one is not a plain file in
    ``directory`` (ORT will refuse the model and say why)."""
    names = {
        e.value
        for t in shared_weights.tensors(model.graph)
        if t.data_location == onnx.TensorProto.EXTERNAL
        for e in t.external_data
        if e.key == "location"
    }
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


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def substituted(
    cached: onnx.ModelProto, model: onnx.ModelProto | None, stage: Path | None
) -> bytes | str | None:
    """The cached graph with ``model``'s weights put in when given (``None`` if ``model`` lacks
    one of them): serialised, or written into the private directory ``stage`` (its path is
    returned) for ORT to read from a file, which keeps no copy of it. Written one weight at a
    time, so the model's weights are never held twice."""
    if model is not None:
        weights = weights_by_name(model)
        if any(t.name not in weights for t in cached.graph.initializer):
            return None
        if stage is None:
            for t in cached.graph.initializer:
                t.CopyFrom(weights[t.name])
    if stage is None:
        return cached.SerializeToString()
    tensors = [weights[t.name] if model is not None else t for t in cached.graph.initializer]
    graph = _without(cached.graph, "initializer").SerializeToString()
    tag = b"\x2a"  # GraphProto.initializer: field 5, length-delimited
    sizes = [t.ByteSize() for t in tensors]
    length = len(graph) + sum(len(tag) + len(_varint(n)) + n for n in sizes)
    path = stage / "source.onnx"
    with open(path, "wb") as f:
        f.write(_without(cached, "graph").SerializeToString())
        f.write(b"\x3a" + _varint(length) + graph)  # ModelProto.graph: field 7
        for t, n in zip(tensors, sizes, strict=True):
            f.write(tag + _varint(n) + t.SerializeToString())
    return str(path)


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
