"""Worker processes (``baton serve --workers N``): throughput, memory with shared weights, and the
memory peak of a swap, side by side in one run.

    python bench/workers.py [--duration 10] [--workers 1,2,4] [--concurrency 64]
                            [--big-mb 200] [--swap-mb 100] [--parts throughput,memory,swap]

1. **Throughput**: req/s, p50 and p99 for 1, 2, 4 workers under closed-loop HTTP load that
   saturates them (``--loadgens`` load generator processes, ``--concurrency`` clients in all),
   with the CPU each side used: the server's process tree and the load generators are measured
   separately, so on a machine where both share the cores "requests per server CPU-second" is
   the number that compares.
2. **Memory**: the node's memory with 1 and N workers serving one ``--big-mb`` ONNX model, as
   the sum of proportional set sizes (PSS: a page shared by k processes counts 1/k in each) over
   the server's processes — and the plain sum of RSS for reference. Target: 4 workers take at
   most 1.5 times what 1 takes.
3. **Swap peak**: the node's PSS during a swap to a new ``--swap-mb`` version, above what it
   used while serving the old one, for Baton with N workers and Seldon MLServer with N
   ``parallel_workers`` (its own venv, bench/.venv-mlserver). A model update in MLServer is a
   repository load of the new model-settings; in Baton, a new version directory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.dev.demo import affine_model, mlp_model, write_version
from baton.dev.testing import ServerProcess, free_ports
from bench.common import (
    Process,
    ensure_mlserver,
    machine,
    mlserver_model_dir,
    stamp,
    table,
    wait_ready,
)
from bench.throughput_client import cpu_since, tree_cpu

MODEL = "m"
WIDTH = 16
MB = 2**20


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def children_cpu() -> float:
    """CPU seconds of this process's children that have exited and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def memory(pid: int) -> tuple[float, float]:
    """(sum of PSS, sum of RSS) over the process tree, in MiB."""
    pss = rss = 0
    for p in tree(pid):
        try:
            info = p.memory_full_info()
        except psutil.Error:
            continue
        pss += info.pss
        rss += info.rss
    return pss / MB, rss / MB


def start_baton(repo: Path, workdir: Path, workers: int, tag: str) -> ServerProcess:
    return ServerProcess.start(
        repo, workdir / f"baton-{tag}.log", poll_interval=0.25, log_level="warning", timeout=300,
        args=("--workers", str(workers), "--grpc-port", "0"),
    )  # fmt: skip


def wait_version(url: str, version: int, timeout: float = 300, width: int = WIDTH) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, width], "data": [0] * width}]}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.post(f"{url}/v2/models/{MODEL}/infer", json=body, timeout=30)
            if r.status_code == 200 and r.json()["model_version"] == str(version):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"version {version} not served within {timeout} s")


# ---- 1. throughput ------------------------------------------------------------------------
def throughput(args, workdir: Path) -> list[list[object]]:
    rows = []
    for n in args.workers:
        repo = workdir / f"tp-{n}"
        write_version(repo / MODEL, 1, affine_model(1.0, width=WIDTH))
        server = start_baton(repo, workdir, n, f"tp-{n}")
        try:
            wait_version(server.url, 1)
            rows.append(_throughput_row(args, workdir, server, n))
        finally:
            server.stop()
    return rows


def _throughput_row(args, workdir: Path, server: ServerProcess, n: int) -> list[object]:
    per = max(1, args.concurrency // args.loadgens)
    outs = [workdir / f"tp-{n}-{i}.npy" for i in range(args.loadgens)]
    command = [sys.executable, str(Path(__file__).parent / "loadgen.py"), "--url",
               f"{server.url}/v2/models/{MODEL}", "--duration", str(args.duration),
               "--concurrency", str(per), "--width", str(WIDTH)]  # fmt: skip
    server_before, gen_before = tree_cpu(server.process.pid), children_cpu()
    started = time.monotonic()
    gens = [subprocess.Popen([*command, "--out", str(out)]) for out in outs]
    for gen in gens:
        gen.wait()
    wall = time.monotonic() - started
    gen_cpu = children_cpu() - gen_before  # the server is still running: not counted here
    server_cpu = cpu_since(server.process.pid, server_before)
    rows = np.concatenate([np.load(out) for out in outs])
    ok = rows[:, 2] == 1
    lat = rows[ok, 1] * 1000
    served = int(ok.sum())
    seconds = args.duration
    return [
        n, served / seconds, float(np.percentile(lat, 50)), float(np.percentile(lat, 99)),
        int((~ok).sum()), server_cpu / seconds, served / max(server_cpu, 1e-9),
        gen_cpu / wall,
    ]  # fmt: skip


# ---- 2. memory with shared weights ----------------------------------------------------------
def big_width(megabytes: int) -> int:
    """The width of a 4-layer MLP whose weights take ``megabytes`` (all of them read by every
    prediction, so all of them resident)."""
    return int((megabytes * MB / 16) ** 0.5)


def big_model_bytes(megabytes: int, seed: int) -> bytes:
    return mlp_model(big_width(megabytes), layers=4, seed=seed).SerializeToString()


def write_bytes_version(repo: Path, version: int, data: bytes) -> None:
    staging = repo / MODEL / f".{version}.tmp"
    staging.mkdir(parents=True)
    (staging / "model.onnx").write_bytes(data)
    staging.rename(repo / MODEL / str(version))


def memory_table(args, workdir: Path) -> list[list[object]]:
    data = big_model_bytes(args.big_mb, 1)
    rows = []
    for n in sorted({1, max(args.workers)}):
        repo = workdir / f"mem-{n}"
        write_bytes_version(repo, 1, data)
        server = start_baton(repo, workdir, n, f"mem-{n}")
        try:
            wait_version(server.url, 1, width=big_width(args.big_mb))
            time.sleep(2)
            pss, rss = memory(server.process.pid)
            rows.append([n, pss, rss])
        finally:
            server.stop()
    base = rows[0][1]
    return [[*r, r[1] / base] for r in rows]


# ---- 3. swap peak: Baton vs MLServer --------------------------------------------------------
class Sampler:
    """The peak of a process tree's PSS, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, memory(self.pid)[0])
            time.sleep(0.05)


def measure_swap(label: str, pid: int, url: str, width: int, update) -> list[object]:
    """Node PSS while serving version 1, its peak while ``update()`` brings version 2 to
    traffic and version 1 drains, and after; with the seconds from update to traffic."""
    wait_version(url, 1, width=width)
    time.sleep(2)
    steady = memory(pid)[0]
    with Sampler(pid) as sampler:
        started = time.monotonic()
        update()
        wait_version(url, 2, width=width)
        to_traffic = time.monotonic() - started
        time.sleep(3)  # the old version drains and unloads
    after = memory(pid)[0]
    return [label, steady, sampler.peak, sampler.peak - steady, after, to_traffic]


def baton_swap(workdir: Path, n: int, old: bytes, new: bytes, width: int) -> list[object]:
    repo = workdir / f"swap-baton-{n}"
    write_bytes_version(repo, 1, old)
    server = start_baton(repo, workdir, n, f"swap-{n}")
    try:
        return measure_swap(f"Baton, {n} workers", server.process.pid, server.url, width,
                            lambda: write_bytes_version(repo, 2, new))  # fmt: skip
    finally:
        server.stop()


def start_mlserver_workers(root: Path, workdir: Path, workers: int) -> Process:
    binary = ensure_mlserver()
    port, grpc_port, metrics_port = free_ports(3)
    (root / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": grpc_port, "metrics_port": metrics_port,
        "parallel_workers": workers, "debug": False,
    }))  # fmt: skip
    log = workdir / f"mlserver-{workers}.log"
    process = subprocess.Popen([str(binary), "start", str(root)], stdout=log.open("w"),
                               stderr=subprocess.STDOUT, cwd=root)  # fmt: skip
    proc = Process("mlserver", f"http://127.0.0.1:{port}", process, log)
    wait_ready(proc, f"/v2/models/{MODEL}/ready", timeout=300)
    return proc


def mlserver_swap(workdir: Path, n: int, old: bytes, new: bytes, width: int) -> list[object]:
    root = workdir / f"swap-mlserver-{n}"
    mlserver_model_dir(root, MODEL, 1, old)
    proc = start_mlserver_workers(root, workdir, n)

    def update() -> None:  # MLServer's documented way: new model settings, a repository load
        mlserver_model_dir(root, MODEL, 2, new)
        httpx.post(f"{proc.url}/v2/repository/models/{MODEL}/load", timeout=600)

    try:
        return measure_swap(f"MLServer, {n} parallel workers", proc.process.pid, proc.url,
                            width, update)  # fmt: skip
    finally:
        proc.stop()


def swap_table(args, workdir: Path) -> list[list[object]]:
    old, new = big_model_bytes(args.swap_mb, 1), big_model_bytes(args.swap_mb, 2)
    width = big_width(args.swap_mb)
    rows = []
    for n in [w for w in args.workers if w > 1]:
        rows.append(baton_swap(workdir, n, old, new, width))
        try:
            rows.append(mlserver_swap(workdir, n, old, new, width))
        except Exception as exc:  # a peer that cannot run here is reported, not fatal
            print(f"MLServer with {n} workers: {exc}".splitlines()[0], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 2, 4])  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--loadgens", type=int, default=2)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--swap-mb", type=int, default=100)
    parser.add_argument("--parts", default="throughput,memory,swap")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    print(f"# bench/workers.py — {machine()} — {stamp()}\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="baton-bench-workers-") as tmp:
        workdir = Path(tmp)
        if "throughput" in parts:
            rows = throughput(args, workdir)
            print(f"## Throughput: HTTP, {args.concurrency} clients in {args.loadgens} load "
                  f"generators, {args.duration:g} s\n")  # fmt: skip
            headers = ["workers", "req/s", "p50 ms", "p99 ms", "failed", "server CPU (cores)",
                       "req per server CPU-s", "load generators' CPU (cores)"]  # fmt: skip
            print(table(headers, rows))
            print(flush=True)
        if "memory" in parts:
            rows = memory_table(args, workdir)
            print(f"## Node memory serving one {args.big_mb} MB ONNX model\n")
            print(table(["workers", "PSS sum MiB", "RSS sum MiB", "PSS vs 1 worker"], rows))
            print(flush=True)
        if "swap" in parts:
            rows = swap_table(args, workdir)
            print(f"## Memory during a swap to a new {args.swap_mb} MB version (PSS, MiB)\n")
            print(table(["server", "serving", "peak", "peak - serving", "after",
                         "swap to traffic s"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
