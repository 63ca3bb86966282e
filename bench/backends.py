"""Per backend: load and warm-up time, infer latency through Baton vs in-process, and resident
memory before and after many swaps.

    python bench/backends.py [--swaps 50] [--requests 2000] [--backends onnx,torchscript,...]

Each backend serves the test suite's model (y = x + offset on FP32[-1, 4], with 4 MB of
weights) from its own server. Load and warm-up times are the server's own (its events).
Latency: one client, requests one at a time, JSON over HTTP; "in-process" calls the same
runtime's ``predict`` in a fresh interpreter, without a server, so the ratio is what the server
and the HTTP round trip add. Memory: the server's RSS with version 1 serving, and after
``--swaps`` more versions were published one by one (each previous one unloaded).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.backends import BACKENDS, build, installed, reveal

from baton.dev.testing import ServerProcess, rotating_latencies
from bench.common import machine, stamp, table

ROOT = Path(__file__).resolve().parent.parent
PADDING = 2**20  # floats: 4 MB of weights per version

DIRECT = """
import json, sys, time
from pathlib import Path
import numpy as np
from baton.runtimes.registry import runtime_for
from baton.settings import ModelSettings
from baton.settings import read_settings
path = Path(sys.argv[1])
config = path.parent / "model.yaml"
settings = read_settings(config) if config.exists() else ModelSettings()
runtime = runtime_for(path, settings)
runtime.load()
x = {"x": np.random.default_rng(0).standard_normal((1, 4)).astype(np.float32)}
for _ in range(200):
    runtime.predict(x, None)
times = []
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    runtime.predict(x, None)
    times.append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def direct_latencies(version_dir: Path, requests: int) -> list[float]:
    out = subprocess.run(
        [sys.executable, "-c", DIRECT, str(version_dir), str(requests)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def event_data(url: str, state: str) -> dict:
    entries = httpx.get(f"{url}/admin/audit", params={"limit": 50}).json()["entries"]
    return next(e["data"] for e in entries if e["kind"] == "state" and e["state"] == state)


def served(url: str) -> str:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0] * 4}]}
    return httpx.post(f"{url}/v2/models/m/infer", json=body, timeout=30).json()["model_version"]


def wait(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def measure(backend: str, tmp: Path, swaps: int, requests: int) -> list[object]:
    model = tmp / backend / "repo" / "m"
    build(backend, model, [(v, float(v), {"padding": PADDING}) for v in range(1, swaps + 2)])
    reveal(model, 1)
    server = ServerProcess.start(model.parent, tmp / backend / "server.log", poll_interval=0.1)
    try:
        load = event_data(server.url, "WARMING")["load_seconds"]
        warm = event_data(server.url, "READY")["warmup_seconds"]
        with httpx.Client(base_url=server.url, timeout=30) as http:
            rotating_latencies(http, ["m"], 4, 50)
            baton = rotating_latencies(http, ["m"], requests // 50, 50, offset=1.0)[0]["m"]
        process = psutil.Process(server.process.pid)
        before = process.memory_info().rss
        for version in range(2, swaps + 2):
            reveal(model, version)
            wait(lambda v=version: served(server.url) == str(v))
        time.sleep(1.0)  # the last retired version's unload
        after = process.memory_info().rss
    finally:
        server.stop()
    direct = direct_latencies(model / "1", requests)
    b50, b99 = np.percentile(baton, 50) * 1e3, np.percentile(baton, 99) * 1e3
    d50, d99 = np.percentile(direct, 50) * 1e3, np.percentile(direct, 99) * 1e3
    return [
        backend, f"{load * 1e3:.0f} ms", f"{warm * 1e3:.1f} ms",
        f"{b50:.3f} / {b99:.3f}", f"{d50:.3f} / {d99:.3f}", f"{b50 - d50:.3f}",
        f"{before / 2**20:.0f} → {after / 2**20:.0f} MiB",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swaps", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            if not installed(BACKENDS[backend][1]):
                rows.append([backend, "not installed", "", "", "", "", ""])
                continue
            rows.append(measure(backend, Path(tmp), args.swaps, args.requests))
            print(" | ".join(map(str, rows[-1])), flush=True)
    print(f"# backends · {stamp()} · {machine()} · {args.swaps} swaps, {args.requests} requests")
    print(table(["backend", "load", "warm-up", "p50 / p99 ms via Baton (HTTP)",
                 "p50 / p99 ms in-process predict", "p50 added ms",
                 f"RSS, v1 → after {args.swaps} swaps"],
                rows))  # fmt: skip


if __name__ == "__main__":
    main()
