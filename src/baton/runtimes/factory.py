"""How a server makes runtimes: with its compile cache, when it has one.

    factory = runtime_factory_for(settings)      # None: the loader's default (no cache)
    runtime = factory(files, model_settings)

Every process of a node (the server, or each worker of ``--workers N``) opens the same cache
directory with the same key, so a graph one process optimised is reused by the others.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from baton.runtimes.base import Runtime
from baton.runtimes.compile_cache import CompileCache, load_or_create_key
from baton.runtimes.registry import runtime_for
from baton.settings import ModelSettings, ServerSettings

if TYPE_CHECKING:
    from baton.artifacts.files import VersionFiles

__all__ = ["compile_cache_for", "runtime_factory_for"]

log = logging.getLogger("baton")


def compile_cache_for(settings: ServerSettings) -> CompileCache | None:
    """The server's compile cache, unless it is turned off (or there is nowhere to put it, or no
    key to sign its entries with)."""
    directory = settings.compile_cache
    if directory is None and settings.state_dir is not None:
        directory = settings.state_dir / "compile-cache"
    if directory is None or settings.compile_cache_bytes == 0:
        return None
    key_path = settings.compile_cache_key or _state_dir() / "compile-cache.key"
    try:
        key = load_or_create_key(key_path)
    except OSError as exc:
        log.warning("compile cache off: no key at %s (%s)", key_path, exc)
        return None
    return CompileCache(directory, settings.compile_cache_bytes, key)


def runtime_factory_for(
    settings: ServerSettings,
) -> Callable[[VersionFiles, ModelSettings], Runtime] | None:
    """A runtime factory that uses the compile cache, or ``None`` when there is no cache."""
    cache = compile_cache_for(settings)
    if cache is None:
        return None
    return lambda files, model_settings: runtime_for(
        files.path, model_settings, cache, code_dirs=files.code_dirs
    )


def _state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")  # fmt: skip
    return Path(base) / "baton"
