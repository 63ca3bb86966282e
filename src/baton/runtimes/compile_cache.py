"""A cache of ONNX Runtime's optimised graphs, so a load can skip graph optimisation — and, for
large models, share their weights between the processes that serve them.

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

**Shared weights.** A model of at least ``SHARE_MIN_BYTES`` (files included), served on the
CPU, also gets a *packed* entry keyed by its contents (:mod:`baton.runtimes.shared_weights`):
the optimised graph with its large weights and their pre-packed copies in one data file,
which every later session — in this process or any worker on the node — maps instead of
copying, so N workers hold the weights once, in the page cache. Its first load builds the
entry (optimising the model, or from a structure entry with the new weights) and then maps it
too; later loads only check and map it. Such an entry takes about twice the weights on disk
(ORT keeps the originals beside the packed copies), so a model shares only when its entry fits
in half of ``max_bytes``; models whose weights are in external data files share the same way.

Building an entry holds the model once, not twice: ORT gets the model as a *skeleton*
(:func:`baton.runtimes.onnx_graphs.skeleton`), whose large weights are external data at their
offsets in the version's own ``model.onnx``, read without ever loading the file whole, so ORT
maps them from the file instead of parsing them onto the heap (``onnx.load``, and a session
created from a file that embeds its weights, both peak at twice the model); a structure hit
puts the new weights into the cached graph the same way. The session that wrote the entry is
let go, and its heap given back, before the session that maps the entry is created. Measured
(``bench/miss_peak.py``): a first load of a 57 MiB model whose weights no kernel pre-packs
peaks at +61 MiB above the process (1.07x; it was +118 MiB); with pre-packed MatMul weights
the build also holds their packed copies until it ends, about one model plus the largest
weight being written (1.13x for 16 weights of 4 MiB, 1.3x for 4 of 16 MiB).

Entries are written to a temporary name and renamed into place, so concurrent loads never see
half an entry (two loads of one model may both optimise it; the later rename wins, and both
entries are the same). The cache is kept under ``max_bytes`` by evicting the least recently
used entries; a packed entry evicted while mapped stays readable by the sessions using it.

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
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime as ort

from baton.runtimes import onnx_graphs as graphs
from baton.runtimes import shared_weights

__all__ = ["SHARE_MIN_BYTES", "CompileCache", "CompiledSession", "load_or_create_key"]

#: Part of every key: bump it when what an entry means changes, so old entries are never used.
FORMAT = 3
MAGIC = b"BATONCC3"
MAC_BYTES = 32
#: Models at least this large (model file and external data) share their weights.
SHARE_MIN_BYTES = 16 * 2**20
#: Scratch files and directories older than this are a crashed load's: removed when evicting.
STALE_SECONDS = 3600
_CPU = ["CPUExecutionProvider"]

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


class CompileCache:
    def __init__(
        self,
        directory: Path,
        max_bytes: int = 2**30,
        key: bytes | None = None,
        *,
        share_weights: bool = True,
    ) -> None:
        """``key`` signs entries; without one, a random key is made, so entries are trusted only
        by this process. ``share_weights=False`` keeps every session's weights on its own heap
        (for comparisons: ``bench/shared_weights.py``)."""
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._key = key if key is not None else secrets.token_bytes(32)
        self._context = f"{FORMAT}|{ort.__version__}|{_machine()}"
        self._share = share_weights and shared_weights.available()
        self._packed = shared_weights.PackedEntries(self.directory, self._mac, self._evict)

    def session(
        self, model_file: Path, options: ort.SessionOptions, providers: list[str]
    ) -> CompiledSession:
        """An inference session for ``model_file``, from the cache when it can be."""
        unoptimised = options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if unoptimised and not (self._share and list(providers) == _CPU):
            return self._plain(model_file, options, providers)  # nothing to cache
        context = f"{self._context}|{providers}|{options.graph_optimization_level}".encode()
        size = model_file.stat().st_size
        alone, rejected = None, False  # the model file's contents key, when computed first
        if self._shares(size, providers):
            # a large model file: its packed entry is found without parsing it (an entry under
            # this key was made from this very file, and names no data files)
            alone = graphs.contents_digest(context, model_file, [])
            session, rejected = self._packed.open(alone, options, providers)
            if session is not None:
                return CompiledSession(session, "hit")
        real = model_file.resolve()  # what a skeleton's weights point into
        try:  # the model without its large weights, which stay in the file
            model = graphs.skeleton(real)
        except ValueError:
            return self._plain(model_file, options, providers)  # ORT says what is wrong
        externals = graphs.external_files(model, model_file.parent, real.name)
        if externals is None:
            return self._plain(model_file, options, providers)
        total = size + sum(p.stat().st_size for p in externals)
        shares = self._shares(total, providers)
        if not shares and (externals or unoptimised or total >= SHARE_MIN_BYTES):
            # a large model that cannot share loads straight from its file: a session created
            # from bytes, or one saving its optimised graph, keeps a second copy of the weights
            return self._plain(model_file, options, providers)
        contents = (
            alone
            if alone and not externals
            else graphs.contents_digest(context, model_file, externals)
        )
        if shares and contents != alone:
            session, bad = self._packed.open(contents, options, providers)
            rejected = rejected or bad
            if session is not None:
                return CompiledSession(session, "hit")
        structure = None
        if not (externals or unoptimised):  # else no optimised graph to keep for other weights
            structure = hashlib.sha256(context + graphs.structure_digest(model)).hexdigest()
        if not shares:
            return self._private(model_file, real, model, options, providers, structure,
                                 contents, rejected)  # fmt: skip
        if not self._writable():
            return self._plain(model_file, options, providers)
        if externals and real.parent != model_file.parent.resolve():
            # a link to a model file elsewhere, its data files beside the link: no one folder
            # holds both, so ORT parses the file itself (holding its embedded weights twice)
            session = self._packed.compile(str(model_file), options, providers, contents, None)
            return CompiledSession(session, "rejected" if rejected else "miss")
        return self._shared(real, model, options, providers, structure, contents, rejected)

    def _shared(
        self,
        real: Path,
        model: onnx.ModelProto,
        options: ort.SessionOptions,
        providers: list[str],
        structure: str | None,
        contents: str,
        rejected: bool,
    ) -> CompiledSession:
        """A model that shares its weights: a new packed entry under ``contents``, built from
        the structure entry with the new weights, else by optimising ``model``, a skeleton of
        the model file at ``real`` (resolved: the skeleton's weights point into it). Either
        way ORT maps the large weights from that file, beside its data files, instead of
        parsing them onto the heap, so the model is never held twice."""
        folder = str(real.parent)
        if structure is not None:
            cached, bad = self._read(structure)
            rejected = rejected or bad
            graph = None if cached is None else graphs.substituted(cached, model)
            session = graph and self._from_graph(graph, options, providers, contents, folder)
            if session is not None:
                return CompiledSession(session, "hit")
        keep = None
        if structure is not None:
            weights = graphs.Weights.of(model, real.parent, real.name)

            def keep(scratch: Path) -> None:
                graph = str(scratch / shared_weights.OPTIMISED)
                optimised = onnx.load(graph, load_external_data=False)
                self._keep(weights, optimised, structure, None, scratch)

        source, model = model.SerializeToString(), None
        session = self._packed.compile(source, options, providers, contents, folder,
                                       keep and (lambda d: self._try(keep, d)))  # fmt: skip
        return CompiledSession(session, "rejected" if rejected else "miss")

    def _private(
        self,
        model_file: Path,
        real: Path,
        model: onnx.ModelProto,
        options,
        providers,
        structure: str | None,
        contents: str,
        rejected: bool,
    ) -> CompiledSession:
        """A small model: every process copies its weights; only the graph is cached."""
        for key, substitute in ((structure, True), (contents, False)):
            cached, bad = (None, False) if key is None else self._read(key)
            rejected = rejected or bad
            if cached is None:
                continue
            full = onnx.load(str(model_file), load_external_data=False) if substitute else None
            graph = graphs.substituted(cached, full)
            session = graph and self._from_graph(graph, options, providers)
            if session is not None:
                return CompiledSession(session, "hit")
        outcome = "rejected" if rejected else "miss"
        if structure is None or not self._writable():
            return self._plain(model_file, options, providers)
        weights = graphs.Weights.of(model, real.parent, real.name)
        scratch = self.directory / f".{uuid.uuid4().hex}.onnx"
        options.optimized_model_filepath = str(scratch)
        try:
            session = ort.InferenceSession(str(model_file), options, providers=providers)
            self._try(lambda: self._keep(weights, onnx.load(str(scratch)), structure, contents))
        finally:
            scratch.unlink(missing_ok=True)
        return CompiledSession(session, outcome)

    def _shares(self, size: int, providers: list[str]) -> bool:
        """Whether a model of ``size`` bytes shares its weights: large, on the CPU, and its
        packed entry (about twice its size) fits in half the cache."""
        return (
            self._share
            and list(providers) == _CPU
            and size >= SHARE_MIN_BYTES
            and 4 * size <= self.max_bytes
        )

    def _plain(self, model_file: Path, options, providers) -> CompiledSession:
        return CompiledSession(
            ort.InferenceSession(str(model_file), options, providers=providers), "bypass"
        )

    def _writable(self) -> bool:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            return True
        except OSError as exc:  # the cache is an optimisation: never a reason to fail a load
            log.warning("compile cache %s unusable (%s); loading without it", self.directory, exc)
            return False

    def _try(self, fn: Callable, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:
            log.warning("compile cache could not keep an entry (%s)", exc)

    def _from_graph(
        self, graph: bytes, options, providers, packed: str | None = None, folder: str = ""
    ):
        """A session from an optimised graph; its weights mapped from a new packed entry under
        ``packed`` when given (a skeleton's weights read from ``folder``). ``None`` when ORT
        refuses the graph."""
        fast = shared_weights.unoptimised(options)
        try:
            if packed is not None:
                return self._packed.compile(graph, fast, providers, packed, folder)
            return ort.InferenceSession(graph, fast, providers=providers)
        except Exception as exc:
            log.warning("compile cache entry could not be used (%s); optimising afresh", exc)
            return None

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

    def _keep(
        self,
        weights: graphs.Weights,
        optimised: onnx.ModelProto,
        structure: str,
        contents: str | None,
        base: Path | None = None,
    ) -> None:
        """Keep ORT's optimised graph: weightless under the structure key when its weights pass
        through unchanged; whole under the contents key otherwise (unless ``contents`` is
        ``None``: a packed entry serves that model). ``base``: where its data file is."""
        passthrough = graphs.weights_pass_through(weights, optimised, base)
        if passthrough:
            graphs.without_values(optimised)
        elif contents is None:
            return
        key = structure if passthrough else contents
        payload = optimised.SerializeToString()
        temp = self.directory / f".{uuid.uuid4().hex}.part"
        temp.write_bytes(MAGIC + self._mac(key, payload) + payload)
        os.replace(temp, self._path(key))
        self._evict()

    def _evict(self) -> None:
        entries, now = [], time.time()
        for item in os.scandir(self.directory):
            try:
                st = item.stat(follow_symlinks=False)
                if item.name.startswith("."):
                    if now - st.st_mtime > STALE_SECONDS:  # a crashed load's scratch
                        _remove(Path(item.path))
                    continue
                if item.name.endswith(".entry"):
                    size = st.st_size
                elif item.name.endswith(".packed") and item.is_dir(follow_symlinks=False):
                    size = sum(f.stat(follow_symlinks=False).st_size
                               for f in os.scandir(item.path))  # fmt: skip
                else:
                    continue
            except FileNotFoundError:
                continue  # another load evicted it
            entries.append((st.st_mtime, size, Path(item.path)))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            _remove(path)  # a mapped packed entry stays readable by the sessions that map it
            total -= size


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
