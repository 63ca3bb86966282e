"""Dynamic batching through the real server: concurrent HTTP and gRPC callers each get their own
rows, and the backend really ran fewer, larger batches."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import orjson
import tritonclient.grpc.aio as triton_aio
from prometheus_client.parser import text_string_to_metric_families

from baton.dev.demo import affine_model, write_version

CALLERS = 48


def batch_histogram(url: str) -> tuple[float, float]:
    """(backend calls, rows) recorded by baton_batch_size for model m."""
    calls = rows = 0.0
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in family.samples:
            if s.name == "baton_batch_size_count" and s.labels["model"] == "m":
                calls = s.value
            if s.name == "baton_batch_size_sum" and s.labels["model"] == "m":
                rows = s.value
    return calls, rows


def test_batched_callers_get_their_own_rows_over_http_and_grpc(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    (root / "m" / "model.yaml").write_text("max_batch_size: 16\nmax_queue_delay_ms: 20\n")
    server = server_factory(root)

    async def http_caller(client: httpx.AsyncClient, i: int) -> None:
        x = np.full((1 + i % 2, 4), float(i), np.float32)
        body = {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": list(x.shape),
                    "data": x.reshape(-1).tolist(),
                }
            ]
        }
        r = await client.post("/v2/models/m/infer", content=orjson.dumps(body))
        assert r.status_code == 200, r.text
        y = np.asarray(r.json()["outputs"][0]["data"], np.float32).reshape(x.shape)
        np.testing.assert_array_equal(y, x + 1)

    async def grpc_caller(client: triton_aio.InferenceServerClient, i: int) -> None:
        import tritonclient.grpc as triton

        x = np.full((1, 4), 1000.0 + i, np.float32)
        inp = triton.InferInput("x", [1, 4], "FP32")
        inp.set_data_from_numpy(x)
        result = await client.infer("m", [inp])
        np.testing.assert_array_equal(result.as_numpy("y"), x + 1)

    async def main() -> None:
        limits = httpx.Limits(max_connections=CALLERS)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as http:
            grpc_client = triton_aio.InferenceServerClient(server.grpc_hostport)
            try:
                for _ in range(3):
                    await asyncio.gather(
                        *(http_caller(http, i) for i in range(CALLERS)),
                        *(grpc_caller(grpc_client, i) for i in range(CALLERS)),
                    )
            finally:
                await grpc_client.close()

    asyncio.run(main())
    calls, rows = batch_histogram(server.url)
    print(f"batching: {rows:.0f} rows in {calls:.0f} backend calls")
    sent_rows = 3 * (sum(1 + i % 2 for i in range(CALLERS)) + CALLERS)
    assert rows == sent_rows  # every row went through the batcher exactly once
    assert calls < 3 * 2 * CALLERS / 2, (calls, rows)  # on average more than 2 requests a call
