"""Raw request-path speed, side by side in one run on one machine with one load generator:
Baton over HTTP and gRPC, Seldon MLServer over HTTP and gRPC (a small runtime wrapping
onnxruntime, bench/mlserver_onnx.py), and a bare Starlette + onnxruntime endpoint with no swap
machinery (bench/bare_server.py, the floor). Same ONNX model (y = x + 1 on FP32[1, 16]).

    python bench/throughput.py [--duration 10] [--concurrency 1,16,64] [--rounds 1]

On a shared machine, ``--rounds 3`` runs every server at once and lets the cells take turns, so
each sees the same moments of the machine's load.

Each cell also reports the server's CPU per request: user + system CPU seconds of the server
process and its children over the measured seconds, divided by the requests answered.

Targets (issue 3): Baton at least 2x MLServer req/s on both protocols at equal or better p99, and
Baton HTTP ≥ 90 % of the bare endpoint's req/s. Issue 13: Baton gRPC's server CPU per request
within 1.3x of Baton HTTP's, and Baton gRPC ≥ 3x MLServer gRPC req/s at every concurrency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.dev.demo import affine_model, write_version
from bench.common import (
    machine,
    mlserver_model_dir,
    stamp,
    start_bare,
    start_baton,
    start_mlserver,
    table,
)

MODEL = "m"
WIDTH = 16


def load(target: str, protocol: str, concurrency: int, duration: float, pid: int) -> dict:
    """One closed-loop cell against ``target``; ``pid`` is the server whose CPU is counted."""
    out = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "throughput_client.py"),
         "--target", target, "--protocol", protocol, "--model", MODEL,
         "--width", str(WIDTH), "--concurrency", str(concurrency),
         "--duration", str(duration), "--server-pid", str(pid)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout)
    result["rps"] = result["requests"] / result["seconds"]
    result["cpu_us"] = result["server_cpu"] / max(result["requests"], 1) * 1e6
    return result


def start(name: str, work: Path, model) -> tuple[object, list[tuple[str, str, str]]]:
    """Start server ``name`` (baton, mlserver or bare); it and its (label, protocol, target)s."""
    if name == "baton":
        repo = work / "baton-repo"
        write_version(repo / MODEL, 1, model)
        proc = start_baton(repo, work)
        return proc, [
            ("baton http", "http", proc.url),
            ("baton grpc", "grpc", f"127.0.0.1:{proc.grpc_port}"),
        ]
    if name == "mlserver":
        repo = work / "mlserver-repo"
        mlserver_model_dir(repo, MODEL, 1, model.SerializeToString())
        proc = start_mlserver(repo, work, MODEL)
        return proc, [("mlserver http", "http", proc.url), ("mlserver grpc", "grpc", proc.grpc)]
    model_file = work / "model.onnx"
    onnx.save(model, str(model_file))
    proc = start_bare(model_file, work)
    return proc, [("bare http", "http", proc.url)]


def median_cell(runs: list[dict]) -> dict:
    """One cell from its rounds: the median of each figure, errors added up."""
    cell = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "cpu_us")}
    cell["errors"] = sum(r["errors"] for r in runs)
    return cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--servers", default="baton,mlserver,bare")
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="with more than 1, every server runs at once and the cells take turns, round "
             "after round (alternating order); each figure is the median of its rounds",
    )  # fmt: skip
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    model = affine_model(1.0, width=WIDTH)
    runs: dict[tuple[str, int], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        names = args.servers.split(",")
        groups = [names] if args.rounds > 1 else [[name] for name in names]
        for group in groups:  # one server at a time, or all of them at once
            started: list[tuple[str, object]] = []
            try:
                cells = []
                for name in group:
                    proc, targets = start(name, work, model)
                    started.append((name, proc))
                    cells += [(label, p, t, c, proc) for label, p, t in targets for c in levels]
                for r in range(args.rounds):
                    for label, protocol, target, c, proc in cells if r % 2 == 0 else cells[::-1]:
                        print(f"{label} at concurrency {c} (round {r + 1}) ...", end="", flush=True)
                        run = load(target, protocol, c, args.duration, proc.process.pid)
                        cpu = run["cpu_us"]
                        print(f" {run['rps']:.0f} req/s, {cpu:.0f} µs CPU/req", flush=True)
                        runs.setdefault((label, c), []).append(run)
            finally:
                for name, proc in started:
                    print(f"{name} exited with {proc.stop()}", flush=True)
    results = {key: median_cell(cell) for key, cell in runs.items()}

    print()
    print(f"throughput — {stamp()} — {machine()}")
    print(
        f"{args.duration:.0f} s per cell after 1 s warm-up; closed loop; "
        f"model y = x + 1 on FP32[1, {WIDTH}]"
        + (f"; median of {args.rounds} interleaved rounds" if args.rounds > 1 else "")
    )
    print()
    rows = [
        [label, c, r["rps"], r["p50"], r["p99"], r["errors"], r["cpu_us"]]
        for (label, c), r in results.items()
    ]
    headers = ["target", "concurrency", "req/s", "p50 ms", "p99 ms", "errors", "server µs CPU/req"]
    print(table(headers, rows))
    print()
    ratios = []
    for c in levels:
        row: list[object] = [c]
        for mine, theirs in (
            ("baton http", "mlserver http"),
            ("baton grpc", "mlserver grpc"),
            ("baton http", "bare http"),
        ):
            a, b = results.get((mine, c)), results.get((theirs, c))
            row += [a["rps"] / b["rps"], a["p99"] / b["p99"]] if a and b else ["-", "-"]
        grpc, http = results.get(("baton grpc", c)), results.get(("baton http", c))
        row.append(grpc["cpu_us"] / http["cpu_us"] if grpc and http else "-")
        ratios.append(row)
    print(
        table(
            [
                "concurrency",
                "HTTP req/s vs MLServer",
                "HTTP p99 vs MLServer",
                "gRPC req/s vs MLServer",
                "gRPC p99 vs MLServer",
                "HTTP req/s vs bare",
                "HTTP p99 vs bare",
                "gRPC CPU/req vs HTTP",
            ],
            ratios,
        )
    )


if __name__ == "__main__":
    main()
