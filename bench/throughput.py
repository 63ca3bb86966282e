"""Raw request-path speed, side by side in one run on one machine with one load generator:
Baton over HTTP and gRPC, Seldon MLServer over HTTP and gRPC (a small runtime wrapping
onnxruntime, bench/mlserver_onnx.py), and a bare Starlette + onnxruntime endpoint with no swap
machinery (bench/bare_server.py, the floor). Same ONNX model (y = x + 1 on FP32[1, 16]).

    python bench/throughput.py [--duration 10] [--concurrency 1,16,64]

Targets (issue 3): Baton at least 2x MLServer req/s on both protocols at equal or better p99, and
Baton HTTP ≥ 90 % of the bare endpoint's req/s.
"""

from __future__ import annotations

import argparse
import json
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


def load(target: str, protocol: str, concurrency: int, duration: float) -> dict:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "throughput_client.py"),
         "--target", target, "--protocol", protocol, "--model", MODEL,
         "--width", str(WIDTH), "--concurrency", str(concurrency),
         "--duration", str(duration)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout)
    result["rps"] = result["requests"] / result["seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--servers", default="baton,mlserver,bare")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    model = affine_model(1.0, width=WIDTH)
    results: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_file = work / "model.onnx"
        onnx.save(model, str(model_file))
        for name in args.servers.split(","):
            if name == "baton":
                repo = work / "baton-repo"
                write_version(repo / MODEL, 1, model)
                proc = start_baton(repo, work)
                targets = [
                    ("baton http", "http", proc.url),
                    ("baton grpc", "grpc", f"127.0.0.1:{proc.grpc_port}"),
                ]
            elif name == "mlserver":
                repo = work / "mlserver-repo"
                mlserver_model_dir(repo, MODEL, 1, model.SerializeToString())
                proc = start_mlserver(repo, work, MODEL)
                targets = [
                    ("mlserver http", "http", proc.url),
                    ("mlserver grpc", "grpc", proc.grpc),
                ]
            else:
                proc = start_bare(model_file, work)
                targets = [("bare http", "http", proc.url)]
            try:
                for label, protocol, target in targets:
                    for c in levels:
                        print(f"{label} at concurrency {c} ...", flush=True)
                        results[(label, c)] = load(target, protocol, c, args.duration)
            finally:
                print(f"{name} exited with {proc.stop()}", flush=True)

    print()
    print(f"throughput — {stamp()} — {machine()}")
    print(
        f"{args.duration:.0f} s per cell after 1 s warm-up; closed loop; "
        f"model y = x + 1 on FP32[1, {WIDTH}]"
    )
    print()
    rows = [
        [label, c, r["rps"], r["p50"], r["p99"], r["errors"]] for (label, c), r in results.items()
    ]
    print(table(["target", "concurrency", "req/s", "p50 ms", "p99 ms", "errors"], rows))
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
            ],
            ratios,
        )
    )


if __name__ == "__main__":
    main()
