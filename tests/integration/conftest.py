"""Start real ``baton serve`` processes on loopback ports and stop them with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    port: int
    process: subprocess.Popen
    log: Path
    repository: Path

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def output(self) -> str:
        return self.log.read_text()


def start_server(
    repository: Path,
    log_dir: Path,
    *,
    poll_interval: float = 0.2,
    env: dict[str, str] | None = None,
    wait_ready: bool = True,
) -> RunningServer:
    port = free_port()
    log = log_dir / f"server-{port}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "baton.cli",
            "serve",
            "--repository",
            str(repository),
            "--http-port",
            str(port),
            "--poll-interval",
            str(poll_interval),
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    server = RunningServer(f"http://127.0.0.1:{port}", port, process, log, repository)
    deadline = time.monotonic() + 60
    while wait_ready:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.output()}")
        try:
            if httpx.get(f"{server.url}/v2/health/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"server not ready in 60 s:\n{server.output()}")
        time.sleep(0.1)
    return server


@pytest.fixture
def server_factory(tmp_path):
    """Call with a repository path; every server started is stopped, and must exit 0."""
    started: list[RunningServer] = []

    def factory(repository: Path, **kwargs) -> RunningServer:
        server = start_server(repository, tmp_path, **kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        code = server.stop()
        assert code == 0, f"server exited with {code}:\n{server.output()[-3000:]}"


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
