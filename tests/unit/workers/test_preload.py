"""The fork server's preload: every module a worker imports once running is still where the
preload looks for it (a library that moved one would silently cost each worker its pages)."""

from __future__ import annotations

import importlib

import pytest

from baton.workers.worker import RUNTIME_MODULES


@pytest.mark.parametrize("name", RUNTIME_MODULES)
def test_every_runtime_module_imports(name):
    assert importlib.import_module(name).__name__ == name
