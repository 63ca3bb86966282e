"""Polls a local model repository: ``ROOT/<model>/<version>/...`` plus optional ``model.yaml``.

A version directory (a positive integer name) is offered only once it is complete: it holds at
least one file and its fingerprint (every file's path, size and mtime) was the same on two
consecutive polls. A version being copied in is therefore never offered half-written. Hidden
entries (``.name``) are ignored, which gives the atomic way to publish::

    cp -r new-model ROOT/mymodel/.3.tmp && mv ROOT/mymodel/.3.tmp ROOT/mymodel/3

A version that changes after it was offered keeps its last stable fingerprint until the new
files have settled. An invalid ``model.yaml`` keeps the last valid settings and reports why.
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
from baton.sources.base import ModelSpec, Publish

__all__ = ["FilesystemSource"]

log = logging.getLogger("baton.sources.filesystem")
CONFIG_FILE = "model.yaml"


class FilesystemSource:
    """Publishes the repository's complete versions every ``interval`` seconds (± jitter)."""

    def __init__(self, root: Path, interval: float = 1.0, jitter: float = 0.1) -> None:
        self.name = f"filesystem:{root}"
        self.root = Path(root)
        self.interval = interval
        self.jitter = jitter
        self._seen: dict[tuple[str, int], str] = {}  # fingerprint at the previous poll
        self._stable: dict[tuple[str, int], str] = {}  # last fingerprint offered
        self._settings: dict[str, ModelSettings] = {}
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
        await asyncio.to_thread(self.scan)
        await asyncio.sleep(min(self.interval, 0.5))
        last: dict[str, ModelSpec] | None = None
        while True:
            self._wake.clear()
            self._scanning = True
            try:
                specs = await asyncio.to_thread(self.scan)
            finally:
                self._scanning = False
            if specs != last:
                publish(self.name, specs)
                last = specs
            self._scanned.set()
            self._scanned = asyncio.Event()
            delay = self.interval * (1 + random.uniform(-self.jitter, self.jitter))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def scan(self) -> dict[str, ModelSpec]:
        """One poll: the full offer. Blocking (file system I/O)."""
        specs: dict[str, ModelSpec] = {}
        seen_now: dict[tuple[str, int], str] = {}
        try:
            model_dirs = sorted(p for p in self.root.iterdir() if p.is_dir())
        except FileNotFoundError:
            log.warning("model repository %s does not exist", self.root)
            model_dirs = []
        for model_dir in model_dirs:
            name = model_dir.name
            if name.startswith((".", "_")):
                continue
            settings, error = self._model_settings(name, model_dir)
            versions: dict[int, VersionFiles] = {}
            for vdir in model_dir.iterdir():
                if not (vdir.is_dir() and vdir.name.isdigit() and int(vdir.name) > 0):
                    continue
                key = (name, int(vdir.name))
                fp = fingerprint(vdir)
                if fp is None:
                    continue
                seen_now[key] = fp
                if self._seen.get(key) == fp:
                    self._stable[key] = fp
                if key in self._stable:
                    versions[key[1]] = VersionFiles(vdir, self._stable[key])
            specs[name] = ModelSpec(name, settings, versions, error)
        self._stable = {k: v for k, v in self._stable.items() if k in seen_now}
        self._seen = seen_now
        return specs

    def _model_settings(self, name: str, model_dir: Path) -> tuple[ModelSettings, str | None]:
        config = model_dir / CONFIG_FILE
        if not config.exists():
            self._settings[name] = ModelSettings()
            return self._settings[name], None
        try:
            self._settings[name] = read_settings(config)
            return self._settings[name], None
        except (OSError, yaml.YAMLError, ValueError, ValidationError) as exc:
            message = f"{config}: {exc}".replace("\n", " ")
            return self._settings.get(name, ModelSettings()), message
