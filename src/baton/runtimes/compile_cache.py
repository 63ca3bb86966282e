"""A cache of ONNX Runtime's optimised graphs, so a load can skip graph optimisation.

On a miss, the session is created as usual with ``optimized_model_filepath`` set, and ORT's
optimised graph is kept. On a later load of a model with the same *structure* (graph, and the
names, shapes and types of its weights), the same execution providers, optimisation level,
ORT version and machine, the session is created from that graph with optimisation off —
with the new model's weights put in by name. So a weights-only update (a retrained model)
skips re-optimisation too.

That substitution is only sound when the optimiser's rewrites did not depend on the weights'
values. The entry is reused for other weights only if the optimised graph holds exactly the
model's weights, byte for byte, and consumes each as many times as the model does: folding,
merging equal constants (ORT shares identical initializers) or dropping a multiply by one all
show up as a weight missing, added, changed or used a different number of times. Otherwise the
entry is keyed by the model's full contents, and only serves reloads of that very model.
Entries reusable for other weights are stored without them, so they are small.

Entries are written to a temporary name and renamed into place, so concurrent loads never see
half an entry (two loads of one model may both optimise it; the later rename wins, and both
entries are the same). The cache is kept under ``max_bytes`` by evicting the least recently
used entries.

The cache is an optimisation, never a trust root: an entry is the graph that will be served, so
each carries an HMAC-SHA256, under a key only the server's user can read (kept outside the
repository, see :func:`load_or_create_key`), over the entry and the key it is stored under —
which is derived from the source model's structure or contents. An entry whose MAC does not
check out (tampered with, damaged, or from another server's key) is discarded, the load reports
``compile_cache: rejected`` in its WARMING event, and the model is compiled afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import platform
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime as ort

__all__ = ["CompileCache", "CompiledSession", "load_or_create_key"]

#: Part of every key: bump it when what an entry means changes, so old entries are never used.
FORMAT = 3
MAGIC = b"BATONCC3"
MAC_BYTES = 32

log = logging.getLogger("baton.compile_cache")


def _machine() -> str:
    """What makes an optimised graph hardware-specific: architecture and CPU model."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}|{model}"


@dataclass(frozen=True, slots=True)
class CompiledSession:
    session: ort.InferenceSession
    outcome: str  # "hit", "miss", "rejected" (a bad entry discarded, then a miss), or "bypass"


def load_or_create_key(path: Path) -> bytes:
    """The cache's MAC key: read from ``path``, or made (32 random bytes, mode 0600, in a 0700
    directory) when there is none yet. Raises ``OSError`` when it can be neither."""
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(32)
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    try:
        os.link(temp, path)  # first writer wins; a concurrent server reads the same key
    except FileExistsError:
        key = path.read_bytes()
    finally:
        temp.unlink(missing_ok=True)
    return key


def _weights(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


def _uses(graph: onnx.GraphProto, names: set[str], counts: Counter | None = None) -> Counter:
    """How many node inputs (subgraphs included) read each of ``names``."""
    counts = Counter() if counts is None else counts
    for node in graph.node:
        counts.update(name for name in node.input if name in names)
        for attribute in node.attribute:
            for sub in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                _uses(sub, names, counts)
    return counts


def _weights_pass_through(model: onnx.ModelProto, optimised: onnx.ModelProto) -> bool:
    """Did the optimiser keep every weight as it was, read as often as before?"""
    originals, kept = _weights(model), _weights(optimised)
    if kept.keys() != originals.keys():
        return False
    if any(t.SerializeToString() != originals[n].SerializeToString() for n, t in kept.items()):
        return False
    names = set(originals)
    return _uses(model.graph, names) == _uses(optimised.graph, names)


def _external(model: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def _structure_digest(model: onnx.ModelProto) -> bytes:
    """SHA-256 of the model without its weights' values (names, shapes and types kept)."""
    weights = list(model.graph.initializer)
    digest = hashlib.sha256()
    for t in weights:
        digest.update(f"{t.name}|{list(t.dims)}|{t.data_type};".encode())
    del model.graph.initializer[:]
    try:
        digest.update(model.SerializeToString())
    finally:
        model.graph.initializer.extend(weights)
    return digest.digest()


class CompileCache:
    def __init__(self, directory: Path, max_bytes: int = 2**30, key: bytes | None = None) -> None:
        """``key`` signs entries; without one, a random key is made, so entries are trusted only
        by this process."""
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._key = key if key is not None else secrets.token_bytes(32)
        self._context = f"{FORMAT}|{ort.__version__}|{_machine()}"

    def session(
        self, model_file: Path, options: ort.SessionOptions, providers: list[str]
    ) -> CompiledSession:
        """An inference session for ``model_file``, from the cache when it can be."""
        data = model_file.read_bytes()
        model = onnx.load_from_string(data)
        if _external(model):
            return CompiledSession(
                ort.InferenceSession(str(model_file), options, providers=providers), "bypass"
            )
        context = f"{self._context}|{providers}|{options.graph_optimization_level}".encode()
        structure = hashlib.sha256(context + _structure_digest(model)).hexdigest()
        contents = hashlib.sha256(context + data).hexdigest()
        rejected = False
        for key, substitute in ((structure, True), (contents, False)):
            cached, bad = self._read(key)
            rejected = rejected or bad
            if cached is not None:
                session = self._from_cached(cached, model, options, providers, substitute)
                if session is not None:
                    return CompiledSession(session, "hit")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # the cache is an optimisation: never a reason to fail a load
            log.warning("compile cache %s unusable (%s); loading without it", self.directory, exc)
            plain = ort.InferenceSession(str(model_file), options, providers=providers)
            return CompiledSession(plain, "bypass")
        scratch = self.directory / f".{uuid.uuid4().hex}.onnx"
        options.optimized_model_filepath = str(scratch)
        try:
            session = ort.InferenceSession(str(model_file), options, providers=providers)
            try:
                self._store(scratch, model, structure, contents)
            except Exception as exc:
                log.warning("compile cache could not keep %s (%s)", model_file, exc)
        finally:
            scratch.unlink(missing_ok=True)
        return CompiledSession(session, "rejected" if rejected else "miss")

    # ---- entries --------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.entry"

    def _mac(self, key: str, payload: bytes) -> bytes:
        return hmac.new(self._key, f"{FORMAT}|{key}|".encode() + payload, "sha256").digest()

    def _read(self, key: str) -> tuple[onnx.ModelProto | None, bool]:
        """(the entry stored under ``key``, whether a bad one was discarded)."""
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None, False
        except OSError as exc:
            log.warning("compile cache entry %s unreadable (%s)", path, exc)
            return None, False
        mac, payload = data[len(MAGIC) : len(MAGIC) + MAC_BYTES], data[len(MAGIC) + MAC_BYTES :]
        cached = None
        if data.startswith(MAGIC) and hmac.compare_digest(mac, self._mac(key, payload)):
            with contextlib.suppress(Exception):
                cached = onnx.load_from_string(payload)
        if cached is None:  # tampered with, damaged, or another key's: never trusted
            log.warning("compile cache entry %s failed its integrity check; discarding it and "
                        "compiling afresh", path.name)  # fmt: skip
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            return None, True
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used
        return cached, False

    def _from_cached(self, cached, model, options, providers, substitute: bool):
        if substitute:
            weights = _weights(model)
            for t in cached.graph.initializer:
                if t.name not in weights:
                    return None
                t.CopyFrom(weights[t.name])
        fast = ort.SessionOptions()
        fast.intra_op_num_threads = options.intra_op_num_threads
        fast.inter_op_num_threads = options.inter_op_num_threads
        fast.log_severity_level = options.log_severity_level
        fast.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(cached.SerializeToString(), fast, providers=providers)
        except Exception as exc:
            log.warning("compile cache entry could not be used (%s); optimising afresh", exc)
            return None

    def _store(self, scratch: Path, model: onnx.ModelProto, structure: str, contents: str) -> None:
        """Keep ORT's optimised graph: weightless under the structure key when its weights pass
        through unchanged; whole under the contents key otherwise."""
        optimised = onnx.load(str(scratch))
        passthrough = _weights_pass_through(model, optimised)
        if passthrough:
            for t in optimised.graph.initializer:
                t.ClearField("raw_data")
                for field in ("float_data", "int32_data", "int64_data", "double_data",
                              "uint64_data", "string_data"):  # fmt: skip
                    t.ClearField(field)
        key = structure if passthrough else contents
        payload = optimised.SerializeToString()
        temp = self.directory / f".{uuid.uuid4().hex}.part"
        temp.write_bytes(MAGIC + self._mac(key, payload) + payload)
        os.replace(temp, self._path(key))
        self._evict()

    def _evict(self) -> None:
        entries = []
        for path in self.directory.glob("*.entry"):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue  # another load evicted it
            entries.append((st.st_mtime, st.st_size, path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
