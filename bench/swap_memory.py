"""Memory across many swaps: drop N versions of a ~50 MB ONNX model into a running Baton and
check that memory from old versions is given back.

    python bench/swap_memory.py [--swaps 500] [--floats 12500000]

Reads the server's resident set (RSS) from /proc: after start (no model), after the first load,
every 50 swaps and at the end, plus the kernel's high-water mark (VmHWM) for the peak.
Versions alternate between two prebuilt files, hard-linked into each new version directory so
the benchmark measures the server, not the disk.
Targets: final RSS within one model size of the RSS after the first load; peak under
(RSS after first load) + 2 model sizes + 10 %.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.dev.demo import affine_model
from bench.common import machine, stamp, start_baton, table

MODEL = "big"
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}]}


def status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def served(url: str) -> int | None:
    r = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=BODY, timeout=30)
    return int(r.json()["model_version"]) if r.status_code == 200 else None


def drop(repo: Path, version: int, sources: list[Path]) -> None:
    staging = repo / MODEL / f".{version}.tmp"
    staging.mkdir(parents=True)
    os.link(sources[version % 2], staging / "model.onnx")
    os.replace(staging, repo / MODEL / str(version))
    old = repo / MODEL / str(version - 2)
    if old.exists():
        shutil.rmtree(old)


def wait_served(url: str, version: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while served(url) != version:
        if time.monotonic() > deadline:
            raise RuntimeError(f"version {version} not served after {timeout} s")
        time.sleep(0.02)


def wait_unloaded(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = httpx.get(f"{url}/admin/models/{MODEL}").json()
        if all(
            v["state"] in ("UNLOADED", "AVAILABLE")
            for v in model["versions"]
            if v["version"] != model["default_version"]
        ):
            return
        time.sleep(0.05)
    raise RuntimeError("old versions did not unload")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--swaps", type=int, default=500)
    parser.add_argument("--floats", type=int, default=12_500_000, help="model size / 4 bytes")
    parser.add_argument("--plot", type=Path, help="also draw RSS after each swap to this PNG")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sources = []
        for i in range(2):
            path = work / f"model-{i}.onnx"
            onnx.save(affine_model(float(i + 1), padding_floats=args.floats), str(path))
            sources.append(path)
        size = sources[0].stat().st_size
        repo = work / "repo"
        (repo / MODEL).mkdir(parents=True)
        proc = start_baton(repo, work, poll_interval=0.1)
        pid = proc.process.pid
        try:
            rss_empty = status(pid)["VmRSS"]
            drop(repo, 1, sources)
            wait_served(proc.url, 1)
            time.sleep(0.5)
            rss_first = status(pid)["VmRSS"]
            trajectory = [(0, rss_first)]
            per_swap = [(0, rss_first)]  # for --plot: RSS as each swap is served
            started = time.perf_counter()
            for v in range(2, args.swaps + 2):
                drop(repo, v, sources)
                wait_served(proc.url, v)
                per_swap.append((v - 1, status(pid)["VmRSS"]))
                if (v - 1) % 50 == 0:
                    wait_unloaded(proc.url)
                    trajectory.append((v - 1, status(pid)["VmRSS"]))
            elapsed = time.perf_counter() - started
            wait_unloaded(proc.url)
            time.sleep(0.5)
            final = status(pid)
        finally:
            code = proc.stop()
    mb = lambda b: b / 1e6  # noqa: E731
    peak_limit = rss_first + 2 * size * 1.10
    print(f"swap memory — {stamp()} — {machine()}")
    print(
        f"{args.swaps} swaps of a {mb(size):.1f} MB ONNX model in {elapsed:.0f} s "
        f"({elapsed / args.swaps * 1000:.0f} ms per swap, drop to serving); server exit {code}"
    )
    print()
    print(table(["after swaps", "RSS MB"], [[n, mb(r)] for n, r in trajectory]))
    print()
    rows = [
        ["RSS, server started, no model", mb(rss_empty), ""],
        ["RSS after first load (baseline)", mb(rss_first), ""],
        [
            f"RSS after {args.swaps} swaps",
            mb(final["VmRSS"]),
            f"≤ {mb(rss_first + size):.1f} (baseline + 1 model): "
            + ("PASS" if final["VmRSS"] <= rss_first + size else "FAIL"),
        ],
        [
            "peak RSS (VmHWM)",
            mb(final["VmHWM"]),
            f"< {mb(peak_limit):.1f} (baseline + 2 models + 10 %): "
            + ("PASS" if final["VmHWM"] < peak_limit else "FAIL"),
        ],
    ]
    print(table(["measure", "MB", "target"], rows))
    if args.plot is not None:
        from bench.plots import rss_over_swaps

        rss_over_swaps(args.plot, per_swap, rss_first, size)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
