"""Weights that every process maps from one file: how N workers serving one ONNX model hold
one copy of its weights, in the page cache, instead of N copies on their heaps.

What ONNX Runtime (1.31, CPU) does with a model's weights, measured with
``bench/shared_weights.py`` and small experiments:

- weights embedded in ``model.onnx`` are copied onto the heap of every process, whether or not
  they are pre-packed; creating the session peaks at twice them (ORT parses the whole file,
  then copies each weight into its tensor), and from bytes as much again on top of those
  bytes;
- weights in an external data file are memory-mapped where they lie (shared) — unless a kernel
  pre-packs them: MatMul and Gemm/FusedGemm (measured; Conv, LSTM/GRU and attention kernels
  pre-pack too) re-lay a constant weight out for their inner loop and keep that copy on the
  heap (the mapping is dropped). Turning pre-packing off (``session.disable_prepacking``)
  keeps the mapping but made FP32 MatMul 2.6x slower at batch 4 and 1.7x at batch 32 (equal
  at batch 1), so it does not pay;
- external data may also point into ``model.onnx`` itself, at any offset (not page-aligned):
  ORT maps it all the same, which is how a first load reads a model's embedded weights
  without copying them (:func:`baton.runtimes.onnx_graphs.skeleton`);
- constants the optimiser makes (constant folding, transposed weights) are new heap tensors;
- weights handed over as ``OrtValue`` (``add_external_initializers``, even over a read-only
  ``numpy.memmap``) are copied; so are in-memory files
  (``add_external_initializers_from_files_in_memory``), unless
  ``session.use_external_initializer_file_buffers_directly`` is set — and then pre-packed
  copies in them are ignored and packed again onto the heap;
- an optimised model saved with ``session.save_external_prepacked_constant_initializers`` has
  the pre-packed copies *in its data file*, and a session created from it maps them: no heap
  copy, same speed. ORT still reads the original weights at every load, and what it serves
  depends on them (zeroed originals gave zero answers), so they stay in the file: an entry
  holds the weights twice on disk. Saving copies each weight it writes onto the heap, one or
  two at a time, and the saving session holds its pre-packed copies on the heap until it is
  let go (``session.disable_prepacking`` would spare those, but then none are saved either).

So a shared entry is such a saved model, a directory ``<key>.packed/`` in the compile cache:

- ``model.onnx.data``: every initializer of at least 64 KiB and every pre-packed copy, which
  all sessions created from the entry map (smaller initializers stay in the graph and are
  copied, which keeps the number of mappings small);
- ``graph.entry``: ``MAGIC``, a MAC, then the payload — the data file's size and SHA-256, and
  the optimised graph, which names the data file.

An entry is the graph that will be served, so it is checked before use: the directory and
its files must belong to this user and be writable by nobody else (no one else can swap or
modify them in place), the graph's MAC must check out and the data file must have the recorded
size and SHA-256. ORT then opens the data file through ``/proc/self/fd/<directory fd>``, so it
maps the very files that were checked even if someone renames the directory meanwhile (ORT
checks that the resolved path stays in that directory, then opens it through the fd). Linux
only: elsewhere :func:`available` is false and every process keeps its own copy.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import hashlib
import hmac
import logging
import os
import shutil
import stat
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import onnx
import onnxruntime as ort

__all__ = [
    "BadEntry",
    "PackedEntries",
    "available",
    "open_session",
    "seal",
    "tensors",
    "write_options",
]

DATA = "model.onnx.data"
GRAPH = "graph.entry"
OPTIMISED = "model.onnx"  # what ORT writes; replaced by GRAPH when sealed
MAGIC = b"BATONSW1"
MAC_BYTES = 32
MIN_EXTERNAL_BYTES = 64 * 1024
_HEADER = struct.Struct("<Q32s")  # data size, data SHA-256
_FOLDER = "session.model_external_initializers_file_folder_path"

Mac = Callable[[bytes], bytes]

log = logging.getLogger("baton.compile_cache")

try:
    _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
except (OSError, AttributeError):  # not glibc
    _trim = None


def _release_heap() -> None:
    """Give the heap copy a compile made back to the OS now, not at the next trim."""
    gc.collect()
    if _trim is not None:
        _trim(0)


class BadEntry(ValueError):
    """An entry that must not be used: damaged, tampered with, or not this user's."""


def available() -> bool:
    """Whether sessions can map a checked entry through ``/proc/self/fd`` here."""
    return os.path.isdir("/proc/self/fd")


def write_options(options: ort.SessionOptions, scratch: Path) -> None:
    """Make the session ``options`` create save its optimised graph into ``scratch``, with the
    large initializers and their pre-packed copies in one data file."""
    options.optimized_model_filepath = str(scratch / OPTIMISED)
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_file_name", DATA
    )
    options.add_session_config_entry(
        "session.optimized_model_external_initializers_min_size_in_bytes", str(MIN_EXTERNAL_BYTES)
    )
    options.add_session_config_entry("session.save_external_prepacked_constant_initializers", "1")


def tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor stored in ``graph``: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for sub in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                yield from tensors(sub)


def _sha256(fd: int) -> bytes:
    """Read in chunks, not mapped: a mapping would count the whole file in the resident set."""
    digest, chunk, offset = hashlib.sha256(), bytearray(1 << 22), 0
    view = memoryview(chunk)
    while n := os.preadv(fd, [chunk], offset):
        digest.update(view[:n])  # hashlib lets the GIL go for large buffers
        offset += n
    return digest.digest()


def seal(scratch: Path, mac: Mac) -> bool:
    """Turn what ORT saved into ``scratch`` (see :func:`write_options`) into an entry; false
    when there is nothing to share (no initializer large enough to go to the data file)."""
    graph = (scratch / OPTIMISED).read_bytes()
    data = scratch / DATA
    if not data.is_file():
        return False
    locations = {
        entry.value
        for tensor in tensors(onnx.load_from_string(graph).graph)
        for entry in tensor.external_data
        if entry.key == "location"
    }
    if locations != {DATA}:
        return False
    fd = os.open(data, os.O_RDONLY | os.O_CLOEXEC)
    try:
        payload = _HEADER.pack(os.fstat(fd).st_size, _sha256(fd)) + graph
    finally:
        os.close(fd)
    temp = scratch / f".{GRAPH}"
    temp.write_bytes(MAGIC + mac(payload) + payload)
    temp.rename(scratch / GRAPH)
    (scratch / OPTIMISED).unlink()
    for path in (data, scratch / GRAPH):
        path.chmod(0o444)
    return True


def _private(st: os.stat_result, kind: Callable[[int], bool]) -> None:
    if not kind(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise BadEntry("not a private entry (other owner, other kind, or writable by others)")


def _open(name: str, directory: int) -> tuple[int, os.stat_result]:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
    try:
        st = os.fstat(fd)
        _private(st, stat.S_ISREG)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def open_session(
    directory: int,
    mac: Mac,
    options: ort.SessionOptions,
    providers: list[str],
    *,
    check_data: bool = True,
) -> ort.InferenceSession:
    """A session created from the entry open as ``directory`` (a file descriptor), with its
    large weights mapped. ``options`` should turn optimisation off (the graph is optimised).
    ``check_data=False`` skips hashing the data file: only for an entry this process has just
    sealed in its own private directory. Raises :class:`BadEntry` for an entry that fails its
    checks, ``OSError`` when it cannot be read."""
    _private(os.fstat(directory), stat.S_ISDIR)
    fd, _ = _open(GRAPH, directory)
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            blob = f.read()
    finally:
        os.close(fd)
    tag, payload = blob[len(MAGIC) : len(MAGIC) + MAC_BYTES], blob[len(MAGIC) + MAC_BYTES :]
    if not (
        blob.startswith(MAGIC)
        and len(payload) >= _HEADER.size
        and hmac.compare_digest(tag, mac(payload))
    ):
        raise BadEntry("graph failed its integrity check")
    size, digest = _HEADER.unpack_from(payload)
    fd, st = _open(DATA, directory)
    try:
        if st.st_size != size or (check_data and _sha256(fd) != digest):
            raise BadEntry("data file differs from the one the graph was sealed with")
        # ORT opens the data file relative to this folder, which names the checked directory
        options = _read_from(options, f"/proc/self/fd/{directory}")
        return ort.InferenceSession(payload[_HEADER.size :], options, providers=providers)
    finally:
        os.close(fd)


def unoptimised(options: ort.SessionOptions) -> ort.SessionOptions:
    """Options for a graph that is already optimised: ``options``' threads, optimisation off."""
    fast = ort.SessionOptions()
    fast.intra_op_num_threads = options.intra_op_num_threads
    fast.inter_op_num_threads = options.inter_op_num_threads
    fast.log_severity_level = options.log_severity_level
    fast.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return fast


class PackedEntries:
    """The packed entries of a compile cache: ``<key>.packed/`` in ``directory``, each signed
    with ``mac(key, payload)``; ``stored()`` is called after one is added (to evict)."""

    def __init__(
        self, directory: Path, mac: Callable[[str, bytes], bytes], stored: Callable[[], None]
    ) -> None:
        self.directory = directory
        self._mac = mac
        self._stored = stored

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.packed"

    def _sign(self, key: str) -> Mac:
        return lambda payload: self._mac(f"{key}.packed", payload)

    def open(
        self, key: str, options: ort.SessionOptions, providers: list[str]
    ) -> tuple[ort.InferenceSession | None, bool]:
        """(a session mapped from the entry under ``key``, whether a bad one was discarded)."""
        path = self.path(key)
        try:
            directory = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError | NotADirectoryError):
                log.warning("compile cache entry %s unreadable (%s)", path.name, exc)
            return None, False
        try:
            session = open_session(directory, self._sign(key), unoptimised(options), providers)
        except FileNotFoundError:
            return None, False  # evicted meanwhile
        except Exception as exc:  # BadEntry, or an entry ORT cannot use: never again
            bad = isinstance(exc, BadEntry)
            problem = "failed its integrity check" if bad else "could not be used"
            log.warning("compile cache entry %s %s (%s); compiling afresh", path.name, problem, exc)
            shutil.rmtree(path, ignore_errors=True)
            return None, bad
        finally:
            os.close(directory)
        _release_heap()  # ORT reads each original weight into a buffer as it loads
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used
        return session, False

    def compile(
        self,
        source: bytes | str,
        options: ort.SessionOptions,
        providers: list[str],
        key: str,
        folder: str | None,
        keep: Callable[[Path], None] | None = None,
    ) -> ort.InferenceSession:
        """A session for ``source`` (a serialised model whose external data files ORT finds in
        ``folder``, or a model file's path) with its large weights mapped from a new entry
        under ``key``, kept for other processes; on the heap when no entry can be made.
        ``keep`` is shown ORT's output directory first (its optimised ``model.onnx`` and data
        file), for a structure entry.

        The session that optimises and writes the entry is let go (and its heap given back)
        before the one that maps the entry is created, so the two never add up."""
        scratch = Path(tempfile.mkdtemp(prefix=".", suffix=".scratch", dir=self.directory))
        level = options.graph_optimization_level
        try:
            write_options(options, scratch)
            _read_from(options, folder)
            session = ort.InferenceSession(source, options, providers=providers)
            if keep is not None:
                keep(scratch)
            try:
                if not seal(scratch, self._sign(key)):
                    return session
                directory = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    with contextlib.suppress(OSError):  # else another load kept it first
                        os.rename(scratch, self.path(key))
                    session = None  # its pre-packed weights are on the heap: let them go first
                    _release_heap()
                    session = open_session(directory, self._sign(key), unoptimised(options),
                                           providers, check_data=False)  # fmt: skip
                finally:
                    os.close(directory)
            except Exception as exc:
                log.warning("compile cache could not share the weights (%s)", exc)
                if session is None:
                    fresh = unoptimised(options)
                    fresh.graph_optimization_level = level
                    session = ort.InferenceSession(source, _read_from(fresh, folder),
                                                   providers=providers)  # fmt: skip
                return session
            _release_heap()  # and what creating this one left
            self._stored()
            return session
        finally:
            shutil.rmtree(scratch, ignore_errors=True)  # gone once renamed


def _read_from(options: ort.SessionOptions, folder: str | None) -> ort.SessionOptions:
    """Make a session created from bytes with ``options`` find external data in ``folder``."""
    if folder is not None:
        options.add_session_config_entry(_FOLDER, folder)
    return options
