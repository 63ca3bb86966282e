"""bench/throughput_client.py's closed loop, with the server's CPU measured over exactly the
measured phase: psutil over the server's whole process tree, so the CPU of worker processes,
Ray's actors or TorchServe's Java frontend and Python workers all count.

    python bench/peers/load_client.py --target URL --protocol http --server-pid PID [...]

Prints the throughput client's JSON summary plus ``server_cpu_s``. ``--grpc-method`` and
``--grpc-typed`` reach v2 gRPC services that live under another name or do not read
``raw_input_contents`` (TorchServe's Open Inference Protocol service).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.throughput_client import grpc_body, run_http

V2_METHOD = "/inference.GRPCInferenceService/ModelInfer"


def tree_cpu(pid: int) -> dict[tuple[int, float], float]:
    """CPU seconds (user + system) of each live process in the tree, by (pid, start time)."""
    root = psutil.Process(pid)
    seconds = {}
    for process in (root, *root.children(recursive=True)):
        try:
            with process.oneshot():
                times = process.cpu_times()
                seconds[(process.pid, process.create_time())] = times.user + times.system
        except psutil.Error:
            continue
    return seconds


def typed_body(model: str, width: int) -> bytes:
    from tritonclient.grpc import service_pb2

    x = np.linspace(-1, 1, width, dtype=np.float32)
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[1, width])
    tensor.contents.fp32_contents.extend(x.tolist())
    return request.SerializeToString()


async def run_grpc(args, deadline: float, latencies: list, errors: list) -> None:
    """throughput_client.run_grpc with the method and the body's encoding as options."""
    import grpc

    body = (typed_body if args.grpc_typed else grpc_body)(args.model, args.width)
    async with grpc.aio.insecure_channel(args.target) as channel:
        call = channel.unary_unary(args.grpc_method)

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    await call(body)
                    latencies.append(time.perf_counter() - t0)
                except grpc.aio.AioRpcError:
                    errors.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))


async def main(args) -> None:
    latencies: list[float] = []
    errors: list[float] = []
    runner = run_http if args.protocol == "http" else run_grpc
    await runner(args, time.perf_counter() + args.warmup, [], [])
    before = tree_cpu(args.server_pid)
    start = time.perf_counter()
    await runner(args, start + args.duration, latencies, errors)
    elapsed = time.perf_counter() - start
    after = tree_cpu(args.server_pid)
    cpu = sum(s - before.get(key, 0.0) for key, s in after.items())
    lat = np.asarray(latencies) * 1000
    summary = {
        "requests": len(latencies),
        "errors": len(errors),
        "seconds": elapsed,
        "p50": float(np.percentile(lat, 50)) if lat.size else None,
        "p99": float(np.percentile(lat, 99)) if lat.size else None,
        "server_cpu_s": cpu,
        "server_processes": len(after),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--protocol", choices=["http", "grpc"], required=True)
    parser.add_argument("--server-pid", type=int, required=True)
    parser.add_argument("--model", default="m")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--binary", action="store_true", help="HTTP binary tensor extension")
    parser.add_argument("--grpc-method", default=V2_METHOD)
    parser.add_argument("--grpc-typed", action="store_true", help="fp32_contents, not raw bytes")
    asyncio.run(main(parser.parse_args()))
