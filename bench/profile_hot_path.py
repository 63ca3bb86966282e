"""Where the time goes per request: py-spy samples a Baton server under HTTP load — only the
thread holding the GIL, i.e. Python work; onnxruntime releases the GIL while it computes — and
the samples are grouped by component. Also reports the server's CPU time per request, and
what share of it is Python holding the GIL.

    python bench/profile_hot_path.py [--concurrency 16] [--duration 8]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.dev.demo import affine_model, write_version
from bench.common import machine, stamp, start_baton, table

#: (component, substrings of a frame that put a sample in it), first match wins, leaf first.
COMPONENTS = [
    ("onnxruntime session.run", ("onnxruntime",)),
    ("request parsing + response encoding (baton codec, orjson, numpy)",
     ("baton/api/http/codec", "baton/serving/codec", "orjson", "numpy")),
    ("routing, validation, handles, metrics (baton data plane)",
     ("baton/api/dataplane", "baton/serving/routing", "baton/loading/contract",
      "baton/serving/handle", "baton/observe/metrics", "prometheus_client",
      "baton/serving/batching")),
    ("fast-path ASGI adapter (baton/api/http/fast_infer)", ("baton/api/http/fast_infer",)),
    ("executor hop (thread pool, futures)", ("concurrent/futures", "threading", "asyncio/futures")),
    ("uvicorn HTTP protocol + transport", ("uvicorn",)),
    ("event loop (asyncio/uvloop)", ("asyncio", "uvloop")),
]  # fmt: skip


def component(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, needles in COMPONENTS:
            if any(n in frame for n in needles):
                return name
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8)
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_version(work / "repo" / "m", 1, affine_model(1.0, width=16))
        server = start_baton(work / "repo", work, poll_interval=1.0)
        try:
            pid = server.process.pid
            profile = work / "profile.txt"
            recorder = subprocess.Popen(
                [spy, "record", "-p", str(pid), "-d", str(int(args.duration)), "-r", "250",
                 "-f", "raw", "-o", str(profile), "--nonblocking", "--gil"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            before = psutil.Process(pid).cpu_times()
            out = subprocess.run(
                [sys.executable, str(Path(__file__).parent / "throughput_client.py"),
                 "--target", server.url, "--protocol", "http",
                 "--concurrency", str(args.concurrency), "--duration", str(args.duration),
                 "--warmup", "0"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            after = psutil.Process(pid).cpu_times()
            recorder.wait()
            load = json.loads(out.stdout)
            samples: Counter[str] = Counter()
            for line in profile.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                samples[component(stack.split(";"))] += int(count)
        finally:
            server.stop()
    cpu = after.user + after.system - before.user - before.system
    per_request = cpu / load["requests"] * 1e6
    total = sum(samples.values())
    print(f"hot path profile — {stamp()} — {machine()}")
    print(
        f"HTTP JSON infer, y = x + 1 on FP32[1, 16], concurrency {args.concurrency}: "
        f"{load['requests'] / load['seconds']:.0f} req/s, server CPU {per_request:.1f} µs "
        "per request"
    )
    print()
    gil_seconds = total / 250  # samples at 250 Hz while some thread held the GIL
    gil_per_request = gil_seconds / load["requests"] * 1e6
    print(
        f"Python holding the GIL: ≈ {gil_per_request:.1f} µs per request; the rest of the CPU "
        "is C without the GIL (socket I/O, uvloop, thread wake-ups, onnxruntime)"
    )
    print()
    rows = [
        [name, n / total * 100, n / total * gil_per_request] for name, n in samples.most_common()
    ]
    print(table(["component", "% of GIL samples", "≈ µs per request"], rows))


if __name__ == "__main__":
    main()
