"""The memory peak of loading a large ONNX model through the compile cache, above a baseline.

    python bench/miss_peak.py [--floats 15000000] [--width 2048] [--layers 4] [--compare REV]

Two models of about 60 MiB, each with a second version of the same structure and other
weights: ``affine`` (``baton.dev.demo.affine_model`` with ``--floats`` of padding read through
a Gather: one large weight that no kernel pre-packs) and ``mlp`` (``mlp_model``: ``--layers``
MatMul weights of ``--width``², which ORT pre-packs). For each, three loads through
``OnnxRuntime`` with a compile cache shared by the three (same directory, same key), each in a
fresh process: (a) ``miss``, v1 with an empty cache (the first load on a node: it builds the
packed entry), (b) ``hit``, v1 again (it maps that entry), (c) ``new weights``, v2 (a
structure hit: the cached optimised graph with v2's weights, which builds v2's packed entry).

Each process imports everything and creates a small ORT session first, then returns freed
memory to the OS and resets its peak (``/proc/self/clear_refs``), so the baseline is a warm
process with no model. Reported, above that baseline: the peak resident set (``VmHWM``, exact),
the peak PSS (``/proc/<pid>/smaps_rollup`` sampled every few ms by this process: it can miss a
short spike), and PSS once loaded (before any request: mapped weights count once touched).
``--compare REV`` runs the same loads with the ``src/`` of git revision ``REV`` too (``git
archive``), for a before/after table.
Target: a load peaks at most about 1.1x the model above the baseline.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20
SCENARIOS = (("miss", 1), ("hit", 1), ("new weights", 2))


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _pss(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise KeyError("Pss")


def child(args: argparse.Namespace) -> None:
    """One load, in a fresh process importing Baton from ``--src``."""
    sys.path.insert(0, args.src)
    import onnx
    import onnxruntime as ort

    from baton.dev.demo import affine_model
    from baton.runtimes.compile_cache import CompileCache
    from baton.runtimes.onnx import OnnxRuntime
    from baton.settings import ModelSettings

    warm = ort.InferenceSession(affine_model(1.0).SerializeToString(),
                                providers=["CPUExecutionProvider"])  # fmt: skip
    del warm, onnx
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    rss, pss = _status("VmRSS"), _pss()
    cache = CompileCache(Path(args.cache), key=Path(args.key).read_bytes())
    runtime = OnnxRuntime(Path(args.model_dir), ModelSettings(), cache)
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    runtime.load()
    seconds = time.perf_counter() - started
    peak = _status("VmHWM") - rss
    gc.collect()
    print(f"done {peak} {_pss() - pss} {pss} {seconds:.2f} {runtime.compile_outcome}", flush=True)
    sys.stdin.readline()


def load(src: Path, model_dir: Path, cache: Path, key: Path) -> dict:
    """Run one load in a fresh process; its peaks above its baseline, in bytes."""
    command = [sys.executable, __file__, "--child", "--src", str(src), "--model-dir",
               str(model_dir), "--cache", str(cache), "--key", str(key)]  # fmt: skip
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        peak, done = 0, threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                try:
                    peak = max(peak, _pss(proc.pid))
                except (OSError, KeyError):
                    return
                time.sleep(0.003)

        sampler = threading.Thread(target=sample)
        sampler.start()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        line = proc.stdout.readline().split()
        done.set()
        sampler.join()
        _, hwm, after, base, seconds, outcome = line
        proc.stdin.write("quit\n")
        proc.stdin.flush()
    finally:
        proc.stdin.close()
        proc.wait(60)
    return {"hwm": int(hwm), "pss": peak - int(base), "after": int(after),
            "seconds": float(seconds), "outcome": outcome}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--floats", type=int, default=15_000_000, help="affine's padding")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--models", default="affine,mlp")
    parser.add_argument("--compare", metavar="REV", help="also measure git revision REV's src/")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "src"))
    from baton.dev.demo import affine_model, mlp_model, write_version
    from bench.common import machine, stamp, table

    makers = {
        "affine": lambda v: affine_model(float(v), padding_floats=args.floats),
        "mlp": lambda v: mlp_model(width=args.width, layers=args.layers, seed=v),
    }
    with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:
        work = Path(tmp)
        key = work / "cache.key"
        key.write_bytes(os.urandom(32))
        ways = {"now": ROOT / "src"}
        if args.compare:
            old = work / "old"
            old.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.compare, "src"],
                                     capture_output=True, check=True).stdout  # fmt: skip
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            ways = {args.compare: old / "src", **ways}
        rows = []
        for name in args.models.split(","):
            versions = {v: write_version(work / "repo" / name, v, makers[name](v)) for v in (1, 2)}
            size = (versions[1] / "model.onnx").stat().st_size
            for way, src in ways.items():
                cache = work / f"cache-{name}-{way}"
                for scenario, v in SCENARIOS:
                    r = load(src, versions[v], cache, key)
                    rows.append([name, f"{size / MIB:.0f}", way, scenario, r["outcome"],
                                 f"+{r['hwm'] / MIB:.0f}", f"{r['hwm'] / size:.2f}x",
                                 f"+{r['pss'] / MIB:.0f}", f"+{r['after'] / MIB:.0f}",
                                 f"{r['seconds']:.2f}"])  # fmt: skip
                    print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    print(f"# miss peak · {stamp()} · {machine()}")
    print(f"# python bench/miss_peak.py {' '.join(sys.argv[1:])}")
    print(table(["model", "MiB", "src", "load", "cache", "VmHWM MiB", "VmHWM / model",
                 "PSS peak MiB", "PSS loaded MiB", "load s"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
