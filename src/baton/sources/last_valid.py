"""The last valid settings of each model, kept on disk so a restart keeps them.

Configuration fails closed: when a model's ``model.yaml`` turns invalid, the settings it last
had while valid stay in force — also after a restart, because every valid reading is saved here
(``<repository>/.baton/settings/<model>.json``, written atomically). A model never seen with a
valid ``model.yaml`` has no last valid settings, and loads nothing.

    store = LastValidSettings(root / ".baton" / "settings")
    store.save("fraud", settings)        # after a valid reading (only writes on a change)
    store.load("fraud")                  # ModelSettings, or None
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path

import orjson
from pydantic import ValidationError

from baton.settings import ModelSettings

__all__ = ["LastValidSettings"]

log = logging.getLogger("baton.sources")


class LastValidSettings:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._saved: dict[str, ModelSettings] = {}
        self._warned = False

    def _path(self, model: str) -> Path:
        return self.directory / f"{model}.json"

    def load(self, model: str) -> ModelSettings | None:
        """The settings last saved for ``model``; ``None`` if none (or the file is damaged)."""
        if model in self._saved:
            return self._saved[model]
        try:
            settings = ModelSettings.model_validate(orjson.loads(self._path(model).read_bytes()))
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError, ValidationError) as exc:
            log.warning("ignoring the saved settings of %s (%s)", model, exc)
            return None
        self._saved[model] = settings
        return settings

    def save(self, model: str, settings: ModelSettings) -> None:
        """Keep ``settings`` as ``model``'s last valid ones (a write only when they changed).
        A store that cannot be written is reported once and otherwise ignored: the settings
        still hold in memory until the server stops."""
        if self._saved.get(model) == settings:
            return
        self._saved[model] = settings
        temp = self.directory / f".{model}.{uuid.uuid4().hex}.tmp"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            temp.write_bytes(orjson.dumps(settings.model_dump(mode="json")))
            os.replace(temp, self._path(model))
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
            if not self._warned:
                log.warning(
                    "cannot keep last valid settings in %s (%s); a restart with an invalid "
                    "model.yaml will load nothing",
                    self.directory,
                    exc,
                )
                self._warned = True
