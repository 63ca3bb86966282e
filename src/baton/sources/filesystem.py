"""Polls a local model repository: ``ROOT/<model>/<version>/...`` plus optional ``model.yaml``.

A version directory (a positive integer name) is offered only once it is complete: it holds at
least one file and its fingerprint (every file's path, size and mtime) was the same on two
consecutive polls. A version being copied in is therefore never offered half-written. Hidden
entries (``.name``) are ignored, which gives the atomic way to publish::

    cp -r new-model ROOT/mymodel/.3.tmp && mv ROOT/mymodel/.3.tmp ROOT/mymodel/3

A version that changes after it was offered keeps its last stable fingerprint until the new
files have settled.

What the source cannot see is unknown, never empty: a repository that is missing or unreadable
(an unmounted volume, a network filesystem hiccup) is published as :class:`Unknown` and the
last offer stands; a model or version directory that cannot be read keeps what it offered last.

Configuration fails closed: an invalid ``model.yaml`` keeps the model's last valid settings,
which are saved under ``ROOT/.baton/settings/`` so a restart keeps them too
(:class:`~baton.sources.last_valid.LastValidSettings`); a model never seen with a valid
``model.yaml`` is offered without settings, and loads nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from pathlib import Path

import yaml
from pydantic import ValidationError

from baton.artifacts.files import VersionFiles, fingerprint
from baton.settings import ModelSettings, read_settings
from baton.sources.base import ModelSpec, Publish, Unknown
from baton.sources.last_valid import LastValidSettings
from baton.types import is_digits

__all__ = ["FilesystemSource", "RepositoryUnavailable"]

log = logging.getLogger("baton.sources.filesystem")
CONFIG_FILE = "model.yaml"


class RepositoryUnavailable(OSError):
    """The repository directory cannot be listed."""


class FilesystemSource:
    """Publishes the repository's complete versions every ``interval`` seconds (± jitter)."""

    def __init__(self, root: Path, interval: float = 1.0, jitter: float = 0.1) -> None:
        self.name = f"filesystem:{root}"
        self.root = Path(root)
        self.interval = interval
        self.jitter = jitter
        self._seen: dict[tuple[str, int], str] = {}  # fingerprint at the previous poll
        self._stable: dict[tuple[str, int], str] = {}  # last fingerprint offered
        self._last: dict[str, ModelSpec] = {}  # the last offer, per model
        self._settings = LastValidSettings(self.root / ".baton" / "settings")
        self._wake = asyncio.Event()
        self._scanned = asyncio.Event()
        self._scanning = False

    async def refresh(self) -> None:
        # A scan already under way may have missed the change that prompted this call:
        # wait for one that starts after it.
        for _ in range(2 if self._scanning else 1):
            scanned = self._scanned
            self._wake.set()
            await scanned.wait()

    async def run(self, publish: Publish) -> None:
        # The first offer comes from a second look, so versions already complete at start are in
        # it and the server's readiness means "everything present at start is loaded".
        with contextlib.suppress(RepositoryUnavailable):
            await asyncio.to_thread(self.scan)
        await asyncio.sleep(min(self.interval, 0.5))
        last: object = None
        while True:
            self._wake.clear()
            self._scanning = True
            try:
                offer = await asyncio.to_thread(self.scan)
            except RepositoryUnavailable as exc:
                offer = Unknown(str(exc))
            finally:
                self._scanning = False
            if offer != last:
                publish(self.name, offer)
                last = offer
            self._scanned.set()
            self._scanned = asyncio.Event()
            delay = self.interval * (1 + random.uniform(-self.jitter, self.jitter))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def scan(self) -> dict[str, ModelSpec]:
        """One poll: the full offer. Blocking (file system I/O). Raises
        :class:`RepositoryUnavailable` when the repository itself cannot be listed."""
        try:
            model_dirs = sorted(p for p in self.root.iterdir() if p.is_dir())
        except OSError as exc:
            raise RepositoryUnavailable(
                f"cannot list the model repository {self.root}: {exc.strerror or exc}"
            ) from None
        specs: dict[str, ModelSpec] = {}
        seen_now: dict[tuple[str, int], str] = {}
        for model_dir in model_dirs:
            name = model_dir.name
            if name.startswith((".", "_")):
                continue
            try:
                specs[name] = self._scan_model(name, model_dir, seen_now)
            except OSError as exc:  # unreadable for now: what it offered last stands
                log.warning("cannot read %s (%s); keeping its last offer", model_dir, exc)
                if name in self._last:
                    specs[name] = self._last[name]
                    seen_now.update({k: v for k, v in self._seen.items() if k[0] == name})
        self._stable = {k: v for k, v in self._stable.items() if k in seen_now}
        self._seen = seen_now
        self._last = specs
        return specs

    def _scan_model(
        self, name: str, model_dir: Path, seen_now: dict[tuple[str, int], str]
    ) -> ModelSpec:
        settings, error = self._model_settings(name, model_dir)
        versions: dict[int, VersionFiles] = {}
        for vdir in model_dir.iterdir():
            if not (is_digits(vdir.name) and int(vdir.name) > 0 and vdir.is_dir()):
                continue
            key = (name, int(vdir.name))
            try:
                fp = fingerprint(vdir, strict=True)
            except OSError:  # listed a moment ago, unreadable now: unknown, not gone
                fp = self._stable.get(key)
                if fp is None:
                    continue
                seen_now[key] = self._seen.get(key, fp)
                versions[key[1]] = VersionFiles(vdir, fp)
                continue
            if fp is None:
                continue
            seen_now[key] = fp
            if self._seen.get(key) == fp:
                self._stable[key] = fp
            if key in self._stable:
                versions[key[1]] = VersionFiles(vdir, self._stable[key])
        return ModelSpec(name, settings, versions, error)

    def _model_settings(
        self, name: str, model_dir: Path
    ) -> tuple[ModelSettings | None, str | None]:
        """(settings, error): the model.yaml's when it is valid (saved as the last valid ones),
        else the last valid ones — ``None`` for a model never seen valid — and why."""
        config = model_dir / CONFIG_FILE
        try:
            settings = read_settings(config) if config.exists() else ModelSettings()
        except (OSError, yaml.YAMLError, ValueError, ValidationError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
                raise  # unreadable, not invalid: the caller keeps the last offer
            message = f"{config}: {exc}".replace("\n", " ")
            return self._settings.load(name), message
        self._settings.save(name, settings)
        return settings, None
