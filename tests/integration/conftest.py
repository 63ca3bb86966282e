"""Real ``baton serve`` processes on loopback ports, stopped with SIGTERM (and exiting 0)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from baton.dev.demo import affine_model, write_version
from baton.dev.testing import ServerProcess

ZEROS = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}


def start_server(repository: Path, log_dir: Path, **kwargs) -> ServerProcess:
    return ServerProcess.start(repository, log_dir / f"server-{time.monotonic_ns()}.log", **kwargs)


@pytest.fixture
def server_factory(tmp_path):
    """Call with a repository path; every server still running at the end is stopped with
    SIGTERM and must exit 0."""
    started: list[ServerProcess] = []

    def factory(repository: Path, **kwargs) -> ServerProcess:
        server = start_server(repository, tmp_path, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        if server.process.poll() is not None:
            continue  # the test ended this one itself (e.g. with kill -9)
        code = server.stop()
        assert code == 0, f"server exited with {code}:\n{server.output()[-3000:]}"


def wait_for(predicate, timeout: float = 30.0, what: str = "", *, interval: float = 0.05):
    """``predicate()``'s first truthy value, polled every ``interval`` s; an AssertionError
    naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what or 'condition'} not met within {timeout:g} s")
        time.sleep(interval)


def baton_cli(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Run the ``baton`` command line (as ``python -m baton.cli``) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "baton.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The single stderr line of a command that failed as a user should see it: non-zero exit,
    one line, no traceback. Returns the line."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
def repo(tmp_path):
    """A repository with model ``m``, versions 1 and 2 (demo models: y = x + version)."""
    root = tmp_path / "repo"
    for v in (1, 2):
        write_version(root / "m", v, affine_model(float(v)))
    return root


def served_version(url: str, model: str = "m") -> str:
    """The version that answers an unversioned request to ``model``."""
    r = httpx.post(f"{url}/v2/models/{model}/infer", content=orjson.dumps({"inputs": [ZEROS]}))
    assert r.status_code == 200, r.text
    return r.json()["model_version"]
