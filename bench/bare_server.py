"""The floor for bench/throughput.py: a bare Starlette + onnxruntime v2 infer endpoint with no
swap machinery, no validation beyond what numpy does, no metrics.

It runs the session off the event loop in a thread pool, as Baton does, so the comparison
measures what Baton's routing, handles, validation, metrics and full protocol support cost.

    python bench/bare_server.py MODEL.onnx PORT
    python bench/bare_server.py --empty ANSWER PORT

``--empty`` is uvicorn with a raw ASGI app that reads the request and answers a file's bytes as
JSON, no model: the HTTP transport's own cost per call (bench/bare_grpc_server.py has gRPC's).
"""

from __future__ import annotations

import asyncio
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def empty_app(answer: bytes):
    """Raw ASGI: read the body, answer ``answer``."""

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    return app


DTYPES = {"FP32": np.float32, "INT64": np.int64}
session: ort.InferenceSession
outputs: list[str]
pool: ThreadPoolExecutor


async def infer(request: Request) -> Response:
    doc = orjson.loads(await request.body())
    feed = {
        t["name"]: np.asarray(t["data"], DTYPES[t["datatype"]]).reshape(t["shape"])
        for t in doc["inputs"]
    }
    results = await asyncio.get_running_loop().run_in_executor(pool, session.run, outputs, feed)
    body = {
        "model_name": request.path_params["model"],
        "outputs": [
            {"name": n, "datatype": "FP32", "shape": list(r.shape), "data": r.reshape(-1)}
            for n, r in zip(outputs, results, strict=True)
        ],
    }
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
    )


async def ready(request: Request) -> Response:
    return Response(b"{}", media_type="application/json")


app = Starlette(
    routes=[
        Route("/v2/models/{model}/infer", infer, methods=["POST"]),
        Route("/v2/health/ready", ready),
    ]
)

if __name__ == "__main__":
    if sys.argv[1] == "--empty":
        served, port = empty_app(Path(sys.argv[2]).read_bytes()), int(sys.argv[3])
    else:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
        outputs = [o.name for o in session.get_outputs()]
        pool = ThreadPoolExecutor(os.cpu_count() or 2)
        served, port = app, int(sys.argv[2])
    uvicorn.run(served, host="127.0.0.1", port=port, log_level="warning", access_log=False)
