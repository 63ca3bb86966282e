"""Closed-loop HTTP load: ``concurrency`` clients each send the next request when the last one
answers, for ``duration`` seconds. Runs in its own process; writes one row per request to an
.npy file: start (epoch s), latency (s), ok (1/0), version (-1 if none), output correct (1/0).

The model is ``y = x + version`` (``baton.dev.demo.affine_model``), so every answer can be checked
against the version that says it computed it.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
import numpy as np
import orjson


async def client(url: str, width: int, deadline: float, rows: list, seed: int) -> None:
    rng = np.random.default_rng(seed)
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while time.time() < deadline:
            x = rng.standard_normal(width).astype(np.float32)
            body = orjson.dumps(
                {
                    "inputs": [
                        {"name": "x", "datatype": "FP32", "shape": [1, width], "data": x.tolist()}
                    ]
                }
            )
            start = time.time()
            t0 = time.perf_counter()
            try:
                r = await http.post(
                    "/infer", content=body, headers={"content-type": "application/json"}
                )
                latency = time.perf_counter() - t0
                if r.status_code != 200:
                    rows.append((start, latency, 0, -1, 0))
                    continue
                doc = orjson.loads(r.content)
                version = int(str(doc.get("model_version", "-1")).lstrip("v") or -1)
                y = np.asarray(doc["outputs"][0]["data"], np.float32)
                correct = int(np.allclose(y, x + version, atol=1e-4))
                rows.append((start, latency, 1, version, correct))
            except (httpx.HTTPError, ValueError, KeyError):
                rows.append((start, time.perf_counter() - t0, 0, -1, 0))


async def main(args: argparse.Namespace) -> None:
    rows: list = []
    deadline = time.time() + args.duration
    await asyncio.gather(
        *(client(args.url, args.width, deadline, rows, i) for i in range(args.concurrency))
    )
    np.save(args.out, np.asarray(rows, dtype=np.float64).reshape(-1, 5))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="model URL, e.g. .../v2/models/m")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--out", required=True)
    asyncio.run(main(parser.parse_args()))
