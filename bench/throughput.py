"""Raw request-path speed, side by side in one run on one machine with one load generator:
Baton over HTTP and gRPC, Seldon MLServer over HTTP and gRPC (a small runtime wrapping
onnxruntime, bench/mlserver_onnx.py), and a bare Starlette + onnxruntime endpoint with no swap
machinery (bench/bare_server.py, the floor). Same ONNX model (y = x + 1 on FP32[1, 16]).

    python bench/throughput.py [--duration 10] [--concurrency 1,16,64] [--rounds 1]
        [--servers baton,mlserver,bare[,bare-grpc,empty-http,empty-grpc,empty-grpclib]]

The floors (bench/bare_server.py, bench/bare_grpc_server.py): ``bare-grpc`` is the gRPC twin of
the bare endpoint (a synchronous grpcio server that parses, runs the session and answers);
``empty-http``, ``empty-grpc`` and ``empty-grpclib`` answer a fixed response without reading the
request (uvicorn with a raw ASGI app; grpcio; grpclib in bench/.venv-grpclib, installed on first
use): what each transport costs per call before any work. With them the script prints each
one's CPU per request against Baton HTTP's and its req/s against MLServer gRPC's: no gRPC server
built on a library can beat that library's empty server.

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

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.dev.demo import affine_model, write_version
from baton.dev.testing import free_port
from bench.common import (
    Process,
    machine,
    mlserver_model_dir,
    stamp,
    start_bare,
    start_baton,
    start_mlserver,
    table,
)
from bench.peers import ensure_venv

MODEL = "m"
WIDTH = 16
GRPCLIB_PINS = ["grpclib==0.4.9"]


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
    answer = work / "answer"  # what the empty servers answer, encoded for their protocol
    if name == "bare":
        proc = start_bare(work, str(model_file))
        return proc, [("bare http", "http", proc.url)]
    if name == "bare-grpc":
        proc = start_grpc_floor(name, work, str(model_file))
        return proc, [("bare grpc", "grpc", proc.grpc)]
    if name == "empty-http":
        answer.with_suffix(".json").write_bytes(json.dumps(RESPONSE).encode())
        proc = start_bare(work, "--empty", str(answer.with_suffix(".json")), name=name)
        return proc, [("empty http", "http", proc.url)]
    answer.with_suffix(".pb").write_bytes(grpc_response())
    if name == "empty-grpc":
        proc = start_grpc_floor(name, work, "--empty", str(answer.with_suffix(".pb")))
        return proc, [("empty grpcio", "grpc", proc.grpc)]
    if name == "empty-grpclib":
        python = ensure_venv("grpclib", GRPCLIB_PINS) / "bin" / "python"
        proc = start_grpc_floor(name, work, "--empty", str(answer.with_suffix(".pb")),
                                "--grpclib", python=python)  # fmt: skip
        return proc, [("empty grpclib", "grpc", proc.grpc)]
    raise ValueError(f"unknown server {name!r}")


#: What the empty servers answer: Baton's answer to the benchmark's request.
RESPONSE = {
    "model_name": MODEL,
    "model_version": "1",
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, WIDTH], "data": [1.0] * WIDTH}],
}


def grpc_response() -> bytes:
    """:data:`RESPONSE` as a v2 ModelInferResponse with raw output contents."""
    from tritonclient.grpc import service_pb2 as pb

    response = pb.ModelInferResponse(model_name=MODEL, model_version="1")
    response.outputs.add(name="y", datatype="FP32", shape=[1, WIDTH])
    response.raw_output_contents.append(np.ones(WIDTH, np.float32).tobytes())
    return response.SerializeToString()


def start_grpc_floor(name: str, work: Path, *args: str, python: Path | None = None) -> Process:
    """bench/bare_grpc_server.py with ``args``, once its port takes connections."""
    import grpc

    port = free_port()
    log = work / f"{name}.log"
    process = subprocess.Popen(
        [str(python or sys.executable), str(Path(__file__).parent / "bare_grpc_server.py"),
         *args, str(port)],
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    proc = Process(name, "", process, log, grpc=f"127.0.0.1:{port}")
    with grpc.insecure_channel(proc.grpc) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=60)
        except grpc.FutureTimeoutError:
            proc.stop()
            raise RuntimeError(f"{name} not ready:\n{log.read_text()[-3000:]}") from None
    return proc


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
    floors = [name for name in ("bare grpc", "empty http", "empty grpcio", "empty grpclib")
              if any(label == name for label, _ in results)]  # fmt: skip
    if not floors:
        return
    print()
    print("Server CPU per request against Baton HTTP's, and req/s against MLServer gRPC's:")
    rows = []
    for c in levels:
        http, mlserver = results.get(("baton http", c)), results.get(("mlserver grpc", c))
        row: list[object] = [c]
        for name in ("baton grpc", *floors):
            cell = results.get((name, c))
            row.append(cell["cpu_us"] / http["cpu_us"] if cell and http else "-")
        for name in ("baton grpc", *[f for f in floors if "grpc" in f]):
            cell = results.get((name, c))
            row.append(cell["rps"] / mlserver["rps"] if cell and mlserver else "-")
        rows.append(row)
    grpc_floors = [f for f in floors if "grpc" in f]
    print(table(["concurrency", *(f"{n} CPU ÷ baton http" for n in ("baton grpc", *floors)),
                 *(f"{n} req/s ÷ mlserver grpc" for n in ("baton grpc", *grpc_floors))],
                rows))  # fmt: skip


if __name__ == "__main__":
    main()
