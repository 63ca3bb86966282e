"""Swap under load: a steady phase, then a phase with a new model version every few seconds, at
a fixed concurrency, against Baton and (in the same run, same model, same load generator)
Seldon MLServer. Prints req/s, p50, p99 and failures per phase, and drop-to-full-traffic time.

    python bench/swap_under_load.py [--phase 20] [--swap-every 2] [--concurrency 8] \
        [--plot docs/bench/swap_latency.png]

Baton picks new versions up from its repository (atomic rename; ``--poll-interval`` 0.25 s).
MLServer gets the model file replaced atomically and a repository ``load`` call, which is its
way to reload a model in place.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.dev.demo import affine_model, write_version
from bench.common import (
    machine,
    mlserver_model_dir,
    percentiles,
    stamp,
    start_baton,
    start_mlserver,
    table,
)

WIDTH = 16
MODEL = "m"


def run_load(url: str, duration: float, concurrency: int, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).parent / "loadgen.py"),
            "--url",
            url,
            "--duration",
            str(duration),
            "--concurrency",
            str(concurrency),
            "--width",
            str(WIDTH),
            "--out",
            str(out),
        ]
    )


def drop_baton(repo: Path, version: int, base_url: str) -> None:
    write_version(repo / MODEL, version, affine_model(float(version), width=WIDTH))


def drop_mlserver(repo: Path, version: int, base_url: str) -> None:
    mlserver_model_dir(
        repo, MODEL, version, affine_model(float(version), width=WIDTH).SerializeToString()
    )
    r = httpx.post(f"{base_url}/v2/repository/models/{MODEL}/load", timeout=120)
    r.raise_for_status()


def measure(name: str, base_url: str, repo: Path, drop, args, workdir: Path) -> dict:
    out = workdir / f"{name}.npy"
    total = 2 * args.phase
    t0 = time.time()
    load = run_load(f"{base_url}/v2/models/{MODEL}", total + 1, args.concurrency, out)
    time.sleep(1 + args.phase)  # 1 s for the load generator to start, then the steady phase
    swap_start = time.time()
    drops: list[tuple[float, int]] = []
    version = 2
    threads = []
    while time.time() < swap_start + args.phase - args.swap_every:
        t_drop = time.time()
        drops.append((t_drop, version))
        # MLServer's load call blocks until reloaded: run drops in threads to keep the schedule
        th = threading.Thread(target=drop, args=(repo, version, base_url))
        th.start()
        threads.append(th)
        version += 1
        time.sleep(max(0.0, t_drop + args.swap_every - time.time()))
    load.wait()
    for th in threads:
        th.join()
    rows = np.load(out)
    start, latency, ok, ver, correct = rows.T
    steady = (start >= t0 + 1) & (start < swap_start)
    swaps = (start >= swap_start) & (start < swap_start + args.phase)
    result = {"name": name}
    for phase, mask in (("steady", steady), ("swaps", swaps)):
        span = start[mask].max() - start[mask].min() if mask.any() else float("nan")
        p50, p99 = percentiles(latency[mask & (ok == 1)])
        result[phase] = {
            "rps": mask.sum() / span,
            "p50": p50,
            "p99": p99,
            "failures": int((mask & ((ok == 0) | (correct == 0))).sum()),
            "requests": int(mask.sum()),
        }
    # drop-to-full-traffic: from the drop until the first request that the new version answers
    # (traffic moves atomically, so later requests go to it); stragglers = requests routed to an
    # older version after that moment.
    switch, stragglers = [], 0
    for t_drop, v in drops:
        new = start[(ver == v) & (start >= t_drop)]
        if new.size:
            moved = new.min()
            switch.append(moved - t_drop)
            stragglers += int(((ver < v) & (ver >= 0) & (start > moved)).sum())
    result["swaps_done"] = len(switch)
    result["swaps_dropped"] = len(drops)
    result["switch_median_s"] = float(np.median(switch)) if switch else float("nan")
    result["switch_max_s"] = float(np.max(switch)) if switch else float("nan")
    result["stragglers"] = stragglers
    result["timeline"] = {  # for --plot: request starts relative to the load's start
        "name": name, "t": start - t0, "latency": latency, "ok": ok * correct,
        "swaps": [t - t0 for t, _ in drops], "swap_start": swap_start - t0,
    }  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase", type=float, default=20, help="seconds per phase")
    parser.add_argument("--swap-every", type=float, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--servers", default="baton,mlserver")
    parser.add_argument("--plot", type=Path, help="also draw latency over time to this PNG")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name in args.servers.split(","):
            repo = workdir / f"{name}-repo"
            if name == "baton":
                write_version(repo / MODEL, 1, affine_model(1.0, width=WIDTH))
                proc = start_baton(repo, workdir)
                drop = drop_baton
            else:
                mlserver_model_dir(
                    repo, MODEL, 1, affine_model(1.0, width=WIDTH).SerializeToString()
                )
                proc = start_mlserver(repo, workdir, MODEL)
                drop = drop_mlserver
            try:
                print(f"measuring {name} ...", flush=True)
                results.append(measure(name, proc.url, repo, drop, args, workdir))
            finally:
                code = proc.stop()
                print(f"{name} exited with {code}", flush=True)

    rows = []
    for r in results:
        for phase in ("steady", "swaps"):
            p = r[phase]
            rows.append(
                [r["name"], phase, p["rps"], p["p50"], p["p99"], p["failures"], p["requests"]]
            )
    print()
    print(f"swap under load — {stamp()} — {machine()}")
    print(
        f"concurrency {args.concurrency}, {args.phase:.0f} s per phase, "
        f"a new version every {args.swap_every:.0f} s, model y = x + v on FP32[1, {WIDTH}]"
    )
    print()
    print(table(["server", "phase", "req/s", "p50 ms", "p99 ms", "failed", "requests"], rows))
    print()
    summary = []
    for r in results:
        s, w = r["steady"], r["swaps"]
        summary.append(
            [
                r["name"],
                w["rps"] / s["rps"],
                w["p99"] / s["p99"],
                f"{r['swaps_done']}/{r['swaps_dropped']}",
                r["switch_median_s"],
                r["switch_max_s"],
                r["stragglers"],
            ]
        )
    print(
        table(
            [
                "server",
                "req/s swaps÷steady",
                "p99 swaps÷steady",
                "swaps seen",
                "drop→traffic median s",
                "max s",
                "old-version stragglers",
            ],
            summary,
        )
    )
    if args.plot is not None:
        from bench.plots import latency_through_swaps

        latency_through_swaps(args.plot, [r["timeline"] for r in results])
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
