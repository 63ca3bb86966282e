"""Shared pieces of the benchmarks: server processes, the MLServer side, and statistics.

Benchmarks compare side by side in one run on one machine; read ratios, not absolute times.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np

from baton.dev.testing import ServerProcess, free_port, free_ports

ROOT = Path(__file__).resolve().parent.parent
MLSERVER_VENV = ROOT / "bench" / ".venv-mlserver"
# uvloop 0.22 breaks MLServer 1.7.1's parallel workers (get_event_loop without a loop).
MLSERVER_PINS = ["mlserver==1.7.1", "onnxruntime==1.31.1", "uvloop<0.22"]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} cores {cpu}, Python {platform.python_version()}, {platform.system()}"


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class Process:
    name: str
    url: str
    process: subprocess.Popen
    log: Path
    grpc: str | None = None  # host:port of its gRPC endpoint, if any

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def wait_ready(proc: Process, path: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"{proc.name} exited:\n{proc.log.read_text()[-3000:]}")
        try:
            if httpx.get(proc.url + path, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"{proc.name} not ready:\n{proc.log.read_text()[-3000:]}")


def start_baton(repository: Path, workdir: Path, poll_interval: float = 0.25) -> ServerProcess:
    return ServerProcess.start(
        repository,
        workdir / "baton.log",
        poll_interval=poll_interval,
        log_level="warning",
        timeout=120,
    )


def start_bare(workdir: Path, *args: str, name: str = "bare") -> Process:
    """bench/bare_server.py with ``args`` (MODEL.onnx, or --empty ANSWER): the floors."""
    port = free_port()
    log = workdir / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bare_server.py"), *args, str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    proc = Process(name, f"http://127.0.0.1:{port}", process, log)
    wait_ready(proc, "/v2/health/ready")
    return proc


def ensure_mlserver() -> Path:
    """MLServer in its own venv (its pins clash with ours); installed on first use."""
    binary = MLSERVER_VENV / "bin" / "mlserver"
    if not binary.exists():
        print(f"installing {' '.join(MLSERVER_PINS)} into {MLSERVER_VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
        pip = [str(MLSERVER_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, *MLSERVER_PINS], check=True)
    return binary


def mlserver_model_dir(root: Path, name: str, version: int, model_bytes: bytes) -> Path:
    """Write (or replace) MLServer's model folder for ``name`` at ``version``."""
    model_dir = root / name
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "bench" / "mlserver_onnx.py", model_dir / "baton_bench_onnx.py")
    tmp = model_dir / ".model.onnx.tmp"
    tmp.write_bytes(model_bytes)
    os.replace(tmp, model_dir / "model.onnx")
    settings = {
        "name": name,
        "implementation": "baton_bench_onnx.OnnxModel",
        "parameters": {"uri": "./model.onnx", "version": str(version)},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(settings))
    return model_dir


def start_mlserver(root: Path, workdir: Path, model: str) -> Process:
    binary = ensure_mlserver()
    port, grpc_port, metrics_port = free_ports(3)
    (root / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": grpc_port,
                "metrics_port": metrics_port,
                "debug": False,
            }
        )
    )
    log = workdir / "mlserver.log"
    process = subprocess.Popen(
        [str(binary), "start", str(root)], stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=root
    )
    proc = Process("mlserver", f"http://127.0.0.1:{port}", process, log, f"127.0.0.1:{grpc_port}")
    wait_ready(proc, f"/v2/models/{model}/ready")
    return proc


def percentiles(latencies: np.ndarray) -> tuple[float, float]:
    if latencies.size == 0:
        return float("nan"), float("nan")
    p50, p99 = np.percentile(latencies, [50, 99])
    return float(p50) * 1000, float(p99) * 1000


def table(headers: list[str], rows: list[list[object]]) -> str:
    cells = [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    fmt = lambda r: "| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(headers), sep, *map(fmt, cells)])
