"""Run a real ``baton serve`` process on a loopback port: for integration tests and benchmarks.

server = ServerProcess.start(Path("repo"), log=Path("server.log"), poll_interval=0.2)
httpx.get(server.url + "/v2/health/ready")
assert server.stop() == 0          # SIGTERM: graceful shutdown must exit 0

:func:`rotating_latencies` compares models on one server side by side: one client, requests one
at a time, in blocks that rotate between the models, so each sees the same moments of a noisy
machine.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import orjson

__all__ = ["ServerProcess", "audit_entries", "free_port", "free_ports", "rotating_latencies"]


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago (all bound at once, so no
    two are the same)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    return free_ports(1)[0]


@dataclass
class ServerProcess:
    url: str
    port: int
    grpc_port: int
    process: subprocess.Popen
    log: Path
    repository: Path
    verify: ssl.SSLContext | bool = True  # how an https:// server's certificate is checked

    @classmethod
    def start(
        cls,
        repository: Path,
        log: Path,
        *,
        poll_interval: float = 0.2,
        log_level: str = "info",
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
        timeout: float = 60,
        args: tuple[str, ...] = (),
        ca_cert: Path | None = None,
        port: int | None = None,
    ) -> ServerProcess:
        """Start ``baton serve`` on free ports (HTTP on ``port`` if given: a restart on the same
        address); ``args`` are extra command-line flags. With ``--tls-cert`` among them, the
        server is reached over https, trusting ``ca_cert``."""
        if port is None:
            port, grpc_port = free_ports(2)
        else:  # a restart: gRPC must not draw the HTTP port, which is free again by now
            grpc_port = next(p for p in free_ports(2) if p != port)
        command = [
            sys.executable, "-m", "baton.cli", "serve", "--repository", str(repository),
            "--http-port", str(port), "--grpc-port", str(grpc_port),
            "--poll-interval", str(poll_interval),
            "--log-level", log_level, *args,
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        scheme = "https" if "--tls-cert" in args else "http"
        verify = ssl.create_default_context(cafile=str(ca_cert)) if ca_cert else True
        server = cls(f"{scheme}://127.0.0.1:{port}", port, grpc_port, process, log, repository,
                     verify)  # fmt: skip
        if wait_ready:
            server.wait_ready(timeout)
        return server

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def grpc_hostport(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait for ``/v2/health/ready``; raise with the server's log if it never comes."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}:\n{self.output()}"
                )
            try:
                ready = httpx.get(f"{self.url}/v2/health/ready", timeout=1, verify=self.verify)
                if ready.status_code == 200:
                    return
            except (httpx.TransportError, httpx.HTTPError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server not ready in {timeout} s:\n{self.output()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; returns the exit code (killed after ``timeout`` seconds)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def output(self) -> str:
        return self.log.read_text()


def rotating_latencies(
    http: httpx.Client,
    models: list[str],
    rounds: int,
    block: int,
    offset: float = 1.0,
    seed: int = 0,
) -> tuple[dict[str, list[float]], list[str]]:
    """Seconds per request to each model, sending ``block`` requests to each model in turn for
    ``rounds`` rounds; and every answer that was not version 1's ``y = x + offset`` (an FP32
    ``[1, 4]`` demo model, see :func:`baton.dev.demo.affine_model`)."""
    rng = np.random.default_rng(seed)
    latencies: dict[str, list[float]] = {m: [] for m in models}
    wrong: list[str] = []
    for _ in range(rounds):
        for model in models:
            for _ in range(block):
                x = rng.standard_normal(4).astype(np.float32)
                tensor = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x.tolist()}
                body = orjson.dumps({"inputs": [tensor]})
                started = time.perf_counter()
                r = http.post(f"/v2/models/{model}/infer", content=body)
                latencies[model].append(time.perf_counter() - started)
                doc = r.json()
                ok = r.is_success and doc.get("model_version") == "1"
                if not ok or not np.allclose(doc["outputs"][0]["data"], x + offset, atol=1e-5):
                    wrong.append(f"{model}: {r.status_code} {r.text[:200]}")
    return latencies, wrong


def audit_entries(url: str, headers: dict | None = None) -> list[dict]:
    """Every entry of a server's audit log, oldest first, following its pages."""
    entries: list[dict] = []
    params: dict = {"limit": 1000}
    while True:
        page = httpx.get(f"{url}/admin/audit", params=params, headers=headers, timeout=30)
        page.raise_for_status()
        doc = page.json()
        entries[:0] = doc["entries"]
        if doc["before"] is None:
            return entries
        params["before"] = doc["before"]
