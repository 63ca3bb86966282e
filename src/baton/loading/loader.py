"""The load pipeline: from a version's files to a warmed-up, routable :class:`VersionHandle`.

verify files (into a private verified copy, when the version has a manifest) → create the
runtime on that copy → load → apply signature overrides → contract check against the serving
version → warm-up → golden set → handle (with a batcher when configured); the verified copy is
removed once the version is loaded, so a runtime must read its files in ``load``. Blocking
steps run on the loader's own threads (``threads``: one per load allowed at once), so loading
never competes with inference threads. Each phase up to WARMING is reported through
``on_phase`` (the manager turns it into a state change; READY is the manager's own).

Two ways to end early, and both leave nothing loaded:

- a failure raises :class:`VersionFailed` after the runtime has been unloaded again;
- cancellation (``task.cancel()`` on the task awaiting :meth:`Loader.load`) takes effect at the
  next safe point — the boundary between two blocking steps. The step under way finishes in
  its thread, then whatever was built is unloaded, then ``CancelledError`` propagates. Cancel
  a load once; a second cancel during that clean-up would cut it short.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

from baton.artifacts.files import VersionFiles
from baton.artifacts.verify import verify_version
from baton.errors import VersionFailed
from baton.loading.contract import (
    apply_overrides,
    batching_obstacle,
    incompatibilities,
    structure_problems,
)
from baton.loading.golden import run_golden
from baton.loading.memory import release_memory, resident_bytes
from baton.loading.warmup import run_warmup
from baton.runtimes.base import Runtime
from baton.runtimes.registry import runtime_for
from baton.serving.batching import Batcher
from baton.serving.handle import VersionHandle
from baton.serving.sequence_state import VersionSequences
from baton.settings import ModelSettings
from baton.types import Signature

__all__ = ["Loader", "RuntimeFactory", "batcher_for"]

RuntimeFactory = Callable[[VersionFiles, ModelSettings], Runtime]
Phase = Callable[..., None]  # on_phase("VERIFYING" | "LOADING" | "WARMING", **facts)


def _default_factory(files: VersionFiles, settings: ModelSettings) -> Runtime:
    return runtime_for(files.path, settings, code_dirs=files.code_dirs)


class Loader:
    def __init__(
        self,
        *,
        threads: int = 1,
        runtime_factory: RuntimeFactory = _default_factory,
        verifier: Callable[[VersionFiles, ModelSettings], dict] = verify_version,
        infer_executor: Executor | None = None,
        batch_observer: Callable[[str, int, int], None] | None = None,
        notify: Callable[..., object] | None = None,
    ) -> None:
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="baton-load")
        self._factory = runtime_factory
        self._verify = verifier
        self._infer_executor = infer_executor
        self._batch_observer = batch_observer
        self._notify = notify  # events.publish, for notes such as "batching_disabled"

    async def load(
        self,
        model: str,
        version: int,
        files: VersionFiles,
        settings: ModelSettings,
        reference: tuple[int, Signature, dict | None] | None,
        on_phase: Phase,
    ) -> tuple[VersionHandle, dict]:
        """Load one version up to (not including) READY; returns its handle and what the READY
        event reports of the warm-up (seconds, runs, source). ``reference`` is the serving
        (version, signature, structure) to stay compatible with, if any. Raises
        :class:`VersionFailed`, or ``CancelledError`` when cancelled (see the module docstring)."""
        loop = asyncio.get_running_loop()
        under_way: list[asyncio.Future] = []  # the blocking step running in a load thread

        async def run(fn, *args):
            future = loop.run_in_executor(self.executor, fn, *args)
            under_way[:] = [future]
            return await asyncio.shield(future)  # cancelling us must not lose track of it

        async def step_ended() -> None:
            if under_way and not under_way[0].done():
                await asyncio.wait(under_way)  # a thread cannot be stopped: let the step end

        runtime: Runtime | None = None
        verifying: asyncio.Future | None = None
        copy: Path | None = None  # the verified copy the runtime loads, removed at the end
        try:
            on_phase("VERIFYING")
            if files.fetch is not None:  # a remote version: bring its files to the cache first
                await run(files.fetch)
            try:
                verified = await run(self._verify, files, settings)
            except asyncio.CancelledError:
                verifying = under_way[0]
                raise
            copy = verified.pop("load_from", None)
            source = VersionFiles(copy, files.fingerprint, verified=True) if copy else files
            on_phase("LOADING", **verified)
            started, rss_before = time.perf_counter(), resident_bytes()
            runtime = self._factory(source, settings)
            await run(runtime.load)
            _reclaim_signals()
            load_seconds = time.perf_counter() - started
            try:
                signature = apply_overrides(runtime.signature(), settings.inputs, settings.outputs)
            except ValueError as exc:
                raise VersionFailed("bad_config", str(exc)) from None
            sequences = await run(  # a migrate hook's module code runs here: off the loop
                _sequences, model, version, settings, signature, runtime, source.path
            )
            public = signature if sequences is None else sequences.public_signature(signature)
            if reference is not None and not settings.allow_breaking_change:
                _check_contract(reference, public, runtime.structure())
            on_phase("WARMING", load_seconds=load_seconds,
                     compile_cache=getattr(runtime, "compile_outcome", None))  # fmt: skip
            started = time.perf_counter()
            warmup = await run(run_warmup, runtime, signature, source.path, settings.warmup)
            await run(run_golden, runtime, source.path, settings.golden)
            handle = VersionHandle(
                model, version, runtime, public, self._infer_executor,
                self._batcher(model, version, runtime, signature, settings), sequences,
            )  # fmt: skip
            handle.predict_seconds = warmup.predict_seconds
            handle.digest = verified.get("digest")
            measured = runtime.memory_bytes()  # a runtime that knows better (another process's)
            handle.memory_bytes = (
                max(0, resident_bytes() - rss_before) if measured is None else measured
            )
            return handle, {
                "warmup_seconds": time.perf_counter() - started,
                "warmup_runs": warmup.runs,
                "warmup_source": warmup.source,
            }
        except BaseException as exc:  # CancelledError included: unload what was built
            await step_ended()
            if verifying is not None and not verifying.cancelled() and not verifying.exception():
                copy = verifying.result().get("load_from")  # verified after all: clean up
            if runtime is not None:
                await run(runtime.unload)
                await run(release_memory)  # give the failed load's memory back now
            if not isinstance(exc, Exception):
                raise  # cancellation
            failure = exc if isinstance(exc, VersionFailed) else VersionFailed(
                "load_error", f"{type(exc).__name__}: {exc}")  # fmt: skip
            if copy is not None:  # name the version's own files, not the private copy
                message = str(failure).replace(str(copy), str(files.path))
                failure = VersionFailed(failure.reason, message)
            raise failure from exc
        finally:
            if copy is not None:
                await step_ended()
                await run(shutil.rmtree, copy, True)

    def _batcher(
        self, model: str, version: int, runtime: Runtime, signature: Signature,
        settings: ModelSettings,
    ) -> Batcher | None:  # fmt: skip
        return batcher_for(model, version, runtime, signature, settings, self._infer_executor,
                           self._batch_observer, self._notify)  # fmt: skip

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True)


def batcher_for(
    model: str,
    version: int,
    runtime: Runtime,
    signature: Signature,
    settings: ModelSettings,
    executor: Executor | None,
    observer: Callable[[str, int, int], None] | None = None,
    notify: Callable[..., object] | None = None,
) -> Batcher | None:
    """The dynamic batcher for a version, or ``None`` when its settings ask for none or its
    signature cannot be batched (then ``notify`` gets a ``batching_disabled`` note)."""
    if settings.max_batch_size <= 1:
        return None
    obstacle = batching_obstacle(signature)
    if obstacle is not None:
        if notify is not None:
            notify("batching_disabled", model, version=version, message=obstacle)
        return None
    return Batcher(
        runtime.predict,
        executor,
        max_batch_size=settings.max_batch_size,
        max_delay=settings.max_queue_delay_ms / 1000,
        preferred_batch_sizes=settings.preferred_batch_sizes,
        on_batch=(lambda rows: observer(model, version, rows)) if observer else None,
    )


def _sequences(
    model: str,
    version: int,
    settings: ModelSettings,
    signature: Signature,
    runtime: Runtime,
    version_dir: Path,
) -> VersionSequences | None:
    """The state store of a stateful version (``sequence`` in model.yaml), else ``None``."""
    if settings.sequence is None:
        return None
    if not runtime.answers_here:
        raise VersionFailed(
            "unsupported",
            "a stateful model (sequence in model.yaml) needs --workers 1: a sequence's state "
            "is kept by the process that answers it",
        )
    return VersionSequences.build(model, version, settings.sequence, signature, version_dir)


def _reclaim_signals() -> None:
    """Frameworks may install their own C-level handlers for SIGTERM/SIGINT when first imported
    (Paddle does), which would kill the server instead of letting it drain: put Python's back.
    Only the main thread may, which is where the loader's event loop runs."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            handler = signal.getsignal(sig)
            if handler is not None:
                signal.signal(sig, handler)


def _check_contract(
    reference: tuple[int, Signature, dict | None], signature: Signature, structure: dict | None
) -> None:
    current, old, old_structure = reference
    mismatch = structure_problems(old_structure, structure)
    if mismatch is not None:
        reason, problems = mismatch
        raise VersionFailed(
            reason,
            f"does not fit serving version {current}: "
            + "; ".join(problems[:5])
            + " (set allow_breaking_change: true in model.yaml to accept it)",
        )
    problems = incompatibilities(old, signature)
    if problems:
        raise VersionFailed(
            "incompatible_signature",
            f"signature incompatible with serving version {current}: "
            + "; ".join(problems)
            + " (set allow_breaking_change: true in model.yaml to accept it)",
        )
