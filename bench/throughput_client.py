"""Closed-loop load with a pre-encoded request, over HTTP (aiohttp) or gRPC (grpc.aio), kept as
light as possible so the client spends little of the machine. Prints a JSON summary:
requests, errors, seconds, latencies' p50/p99 in ms and, with ``--server-pid``, the server's CPU
seconds (user + system, over its whole process tree: worker processes, Ray's actors,
TorchServe's Java frontend and Python workers) spent during the measured phase.
``--grpc-method`` and ``--grpc-typed`` reach v2 gRPC services that live under another name or do
not read ``raw_input_contents`` (TorchServe's Open Inference Protocol service).

    python bench/throughput_client.py --target http://127.0.0.1:8000 --protocol http \\
        --model m --concurrency 16 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np


def http_request(width: int, binary: bool) -> tuple[bytes, dict[str, str]]:
    """Body and headers: JSON tensors, or the binary tensor extension both ways."""
    x = np.linspace(-1, 1, width, dtype=np.float32)
    tensor = {"name": "x", "datatype": "FP32", "shape": [1, width]}
    if not binary:
        body = json.dumps({"inputs": [{**tensor, "data": x.tolist()}]}).encode()
        return body, {"content-type": "application/json"}
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": x.nbytes}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return header + x.tobytes(), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }


V2_METHOD = "/inference.GRPCInferenceService/ModelInfer"


def grpc_body(model: str, width: int, typed: bool = False) -> bytes:
    """A v2 ModelInferRequest: the tensor as ``raw_input_contents``, or ``typed`` as
    ``contents.fp32_contents``."""
    from tritonclient.grpc import service_pb2

    x = np.linspace(-1, 1, width, dtype=np.float32)
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[1, width])
    if typed:
        tensor.contents.fp32_contents.extend(x.tolist())
    else:
        request.raw_input_contents.append(x.tobytes())
    return request.SerializeToString()


async def run_http(args, deadline: float, latencies: list, errors: list) -> None:
    import aiohttp

    url = f"{args.target}/v2/models/{args.model}/infer"
    body, headers = http_request(args.width, args.binary)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    ok = r.status == 200
                (latencies if ok else errors).append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))


async def run_grpc(args, deadline: float, latencies: list, errors: list) -> None:
    import grpc

    body = grpc_body(args.model, args.width, args.grpc_typed)
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


def tree_cpu(pid: int) -> dict[tuple[int, float], float]:
    """CPU seconds (user + system) of each live process in ``pid``'s tree, by (pid, start
    time): processes that start or end between two readings are counted from when they run."""
    import psutil

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


def cpu_since(pid: int, before: dict[tuple[int, float], float]) -> float:
    """CPU seconds ``pid``'s tree spent since ``before = tree_cpu(pid)``."""
    return sum(s - before.get(key, 0.0) for key, s in tree_cpu(pid).items())


async def main(args) -> None:
    latencies: list[float] = []
    errors: list[float] = []
    warm_until = time.perf_counter() + args.warmup
    runner = run_http if args.protocol == "http" else run_grpc
    await runner(args, warm_until, [], [])
    cpu_before = tree_cpu(args.server_pid) if args.server_pid is not None else {}
    start = time.perf_counter()
    await runner(args, start + args.duration, latencies, errors)
    elapsed = time.perf_counter() - start
    server_cpu = cpu_since(args.server_pid, cpu_before) if args.server_pid is not None else None
    lat = np.asarray(latencies) * 1000
    print(
        json.dumps(
            {
                "requests": len(latencies),
                "errors": len(errors),
                "seconds": elapsed,
                "p50": float(np.percentile(lat, 50)) if lat.size else None,
                "p99": float(np.percentile(lat, 99)) if lat.size else None,
                "server_cpu": server_cpu,
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--protocol", choices=["http", "grpc"], required=True)
    parser.add_argument("--model", default="m")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--binary", action="store_true", help="HTTP binary tensor extension")
    parser.add_argument("--server-pid", type=int, help="report this process tree's CPU seconds")
    parser.add_argument("--grpc-method", default=V2_METHOD)
    parser.add_argument("--grpc-typed", action="store_true", help="fp32_contents, not raw bytes")
    asyncio.run(main(parser.parse_args()))
