"""Weights shared between worker processes: node memory for N processes serving one ONNX model.

    python bench/shared_weights.py [--width 3584] [--layers 4] [--processes 1,2,4]

Builds an MLP of ``--layers`` MatMul + Add + Relu layers of ``--width``² FP32 weights (4 x
3584² = 196 MiB by default) in one version directory, then, for N processes and each way of
loading, starts N processes one after the other (as ``--workers N`` loads a version: one
worker at a time, all from the same directory), each loading the model through Baton's
``OnnxRuntime`` with a compile cache in a fresh directory shared by the N (same key). With
all N loaded and warmed up, it reads every process's RSS, USS (memory only it holds) and PSS
(its share of every page, a page mapped by k processes counting 1/k to each) from
``/proc/<pid>/smaps_rollup`` (psutil), and sums PSS over the N: the honest node memory. Then
the first process times ``predict`` (p50 of ``--runs``, one intra-op thread) while the others
idle. Last, one process loads the model both ways and times the two sessions in turns (less
noisy than comparing processes on a busy machine).

Ways of loading: ``none`` (the same processes with no model loaded: what any worker costs),
``private`` (``CompileCache(share_weights=False)``: every process copies the
weights onto its own heap, as Baton did before sharing) and ``shared`` (the default: the
weights and their pre-packed copies are mapped from one packed compile-cache entry).
Target (issue 13): node memory with 4 processes at most 1.5x that with 1, with shared weights.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MIB = 2**20


def child(args: argparse.Namespace) -> None:
    """One worker: load, warm up, then answer ``latency`` and ``quit`` on stdin."""
    import numpy as np

    from baton.runtimes.compile_cache import CompileCache
    from baton.runtimes.onnx import OnnxRuntime
    from baton.settings import ModelSettings

    if args.mode == "none":  # the same process with no model: what any worker costs
        print("ready 0 -", flush=True)
        for line in sys.stdin:
            if line.strip() == "latency":
                print("latency" + " -" * len(args.batches), flush=True)
            else:
                break
        return
    key = Path(args.key).read_bytes()
    if args.mode == "compare":  # both ways in one process, timed in turns
        runtimes = {}
        for mode in ("private", "shared"):
            cache = CompileCache(Path(args.cache), key=key, share_weights=mode == "shared")
            runtimes[mode] = OnnxRuntime(Path(args.model_dir), ModelSettings(), cache)
            runtimes[mode].load()
        spec = runtimes["private"].signature().inputs[0]
        for batch in args.batches:
            x = {spec.name: np.random.default_rng(0).standard_normal((batch, spec.shape[-1]),
                                                                    np.float32)}  # fmt: skip
            times = {mode: [] for mode in runtimes}
            for i in range(3 * args.runs + 2):
                for mode, runtime in runtimes.items():
                    t = time.perf_counter()
                    runtime.predict(x, None)
                    if i >= 2:  # the first two are warm-up
                        times[mode].append(time.perf_counter() - t)
            p50 = [float(np.median(times[mode])) * 1000 for mode in runtimes]
            print(f"{batch} {p50[0]:.2f} {p50[1]:.2f} {p50[1] / p50[0]:.2f}", flush=True)
        return
    cache = CompileCache(Path(args.cache), key=key, share_weights=args.mode == "shared")
    runtime = OnnxRuntime(Path(args.model_dir), ModelSettings(), cache)
    started = time.perf_counter()
    runtime.load()
    seconds = time.perf_counter() - started
    spec = runtime.signature().inputs[0]
    width = spec.shape[-1]
    for batch in args.batches:  # warm-up: every page of the weights is touched
        runtime.predict({spec.name: np.ones((batch, width), np.float32)}, None)
    print(f"ready {seconds:.3f} {runtime.compile_outcome}", flush=True)
    for line in sys.stdin:
        if line.strip() == "latency":
            p50s = []
            for batch in args.batches:
                x = {spec.name: np.random.default_rng(0).standard_normal((batch, width),
                                                                        np.float32)}  # fmt: skip
                times = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    runtime.predict(x, None)
                    times.append(time.perf_counter() - t)
                p50s.append(f"{float(np.median(times)) * 1000:.2f}")
            print("latency " + " ".join(p50s), flush=True)
        else:
            break
    runtime.unload()


def measure(mode: str, n: int, model_dir: Path, work: Path, args) -> list[object]:
    import psutil

    cache = work / f"cache-{mode}-{n}"
    command = [sys.executable, __file__, "--child", "--mode", mode, "--model-dir",
               str(model_dir), "--cache", str(cache), "--key", str(work / "cache.key"),
               "--runs", str(args.runs), "--batches", ",".join(map(str, args.batches))]  # fmt: skip
    procs, loads, outcomes = [], [], []
    try:
        for _ in range(n):  # one at a time, as workers load a version
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    text=True)  # fmt: skip
            procs.append(proc)
            _, seconds, outcome = proc.stdout.readline().split()
            loads.append(float(seconds))
            outcomes.append(outcome)
        time.sleep(0.5)
        info = [psutil.Process(p.pid).memory_full_info() for p in procs]
        procs[0].stdin.write("latency\n")
        procs[0].stdin.flush()
        p50 = procs[0].stdout.readline().split()[1:]
    finally:
        for proc in procs:
            if not proc.stdin.closed:
                proc.stdin.write("quit\n")
                proc.stdin.close()
            proc.wait(60)
    avg = lambda field: sum(getattr(i, field) for i in info) / len(info) / MIB  # noqa: E731
    total = sum(i.pss for i in info) / MIB
    seconds = " / ".join(f"{s:.2f}" for s in loads)
    return [mode, n, f"{avg('rss'):.0f}", f"{avg('uss'):.0f}", f"{avg('pss'):.0f}",
            f"{total:.0f}", seconds, "/".join(dict.fromkeys(outcomes)), *p50]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=3584)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--modes", default="none,private,shared")
    parser.add_argument("--batches", default="1,8", help="batch sizes timed")
    parser.add_argument("--runs", type=int, default=30, help="predict calls timed per batch")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    if args.child:
        child(args)
        return

    import onnx

    from baton.dev.demo import mlp_model
    from bench.common import machine, stamp, table

    command = "python bench/shared_weights.py " + " ".join(sys.argv[1:])
    rows = []
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as tmp:
        work = Path(tmp)
        model_dir = work / "repo" / "mlp" / "1"
        model_dir.mkdir(parents=True)
        onnx.save(mlp_model(width=args.width, layers=args.layers), str(model_dir / "model.onnx"))
        size = (model_dir / "model.onnx").stat().st_size / MIB
        (work / "cache.key").write_bytes(os.urandom(32))
        for mode in args.modes.split(","):
            for n in (int(p) for p in args.processes.split(",")):
                rows.append(measure(mode, n, model_dir, work, args))
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
        compare = []
        if {"private", "shared"} <= set(args.modes.split(",")):
            command_compare = [sys.executable, __file__, "--child", "--mode", "compare",
                               "--model-dir", str(model_dir), "--cache",
                               str(work / f"cache-shared-{args.processes.split(',')[0]}"),
                               "--key", str(work / "cache.key"), "--runs", str(args.runs),
                               "--batches", ",".join(map(str, args.batches))]  # fmt: skip
            out = subprocess.run(command_compare, capture_output=True, text=True, check=True)
            compare = [line.split() for line in out.stdout.splitlines()]
    print(f"# shared weights · {stamp()} · {machine()}")
    print(f"# {command}")
    print(f"# model: MLP {args.layers} x {args.width}² FP32, model.onnx {size:.0f} MiB")
    print(table(["weights", "processes", "RSS MiB (each)", "USS MiB (each)", "PSS MiB (each)",
                 "node PSS MiB (sum)", "load s (in order)", "compile cache",
                 *(f"p50 ms batch {b}" for b in args.batches)], rows))  # fmt: skip
    if compare:
        print()
        print(f"predict p50 in one process, private and shared sessions in turns "
              f"({3 * args.runs} calls each)")  # fmt: skip
        print(table(["batch", "private ms", "shared ms", "shared / private"], compare))
    by = {(r[0], r[1]): float(r[5]) for r in rows}
    counts = sorted({r[1] for r in rows})
    for mode in args.modes.split(","):
        if mode == "none" or (mode, counts[0]) not in by:
            continue
        line = [f"{mode}: node PSS, {counts[-1]} processes / {counts[0]}: "
                f"{by[mode, counts[-1]] / by[mode, counts[0]]:.2f}x"]  # fmt: skip
        if ("none", counts[0]) in by:
            model = [by[mode, n] - by["none", n] for n in (counts[0], counts[-1])]
            line.append(f"less the processes with no model: {model[0]:.0f} → {model[1]:.0f} MiB, "
                        f"{model[1] / model[0]:.2f}x")  # fmt: skip
        print("; ".join(line))


if __name__ == "__main__":
    main()
