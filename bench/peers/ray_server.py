"""Ray Serve wrapping onnxruntime, used only to compare against Baton.

Runs inside Ray's own venv, as the driver of a local Ray cluster:

    python ray_server.py --http-port P --model MODEL_FILE [--max-ongoing N]

Serves ``POST /v2/models/m/infer`` (KServe v2 JSON) from one replica. New versions arrive the
way Ray Serve documents updating a model in place: the application is deployed again with
``serve.run`` and a new ``user_config``, which calls ``reconfigure`` on the running replica. Each
line ``VERSION MODEL_FILE`` on stdin does that; the driver answers ``updated VERSION`` once
``serve.run`` has returned. Prints ``ready`` once serving.
"""

import argparse
import logging
import os
import sys

import numpy as np
import onnxruntime as ort
import ray
from ray import serve
from starlette.requests import Request

NAME = "m"
# per-request log lines off, as on every server compared
LOGGING = {"enable_access_log": False, "log_level": "WARNING"}
DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 1})
class OnnxModel:
    def __init__(self) -> None:
        self.session = None
        self.version = "0"

    def reconfigure(self, config: dict) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            config["path"], options, providers=["CPUExecutionProvider"]
        )
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.version = str(config["version"])

    async def __call__(self, request: Request) -> dict:
        body = await request.json()
        feeds = {
            t["name"]: np.asarray(t["data"], DTYPES[t["datatype"]]).reshape(t["shape"])
            for t in body["inputs"]
        }
        results = self.session.run(self.outputs, feeds)
        return {
            "model_name": NAME,
            "model_version": self.version,
            "outputs": [
                {"name": n, "datatype": "FP32", "shape": list(r.shape), "data": r.ravel().tolist()}
                for n, r in zip(self.outputs, results, strict=True)
            ],
        }


def deploy(version: str, path: str, max_ongoing: int | None) -> None:
    options: dict = {"user_config": {"version": version, "path": path}}
    if max_ongoing:
        options["max_ongoing_requests"] = max_ongoing
    app = OnnxModel.options(**options).bind()
    serve.run(app, name=NAME, route_prefix=f"/v2/models/{NAME}", logging_config=LOGGING)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--max-ongoing", type=int, help="max_ongoing_requests (Serve's default: 5)")
    args = parser.parse_args()
    # address="local": a cluster of its own, never one that happens to run on this machine
    ray.init(
        address="local",
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        logging_level=logging.WARNING,
    )
    serve.start(
        http_options={"host": "127.0.0.1", "port": args.http_port},
        logging_config=LOGGING,
    )
    deploy("1", args.model, args.max_ongoing)
    print("ready", flush=True)
    for line in sys.stdin:
        version, path = line.split()
        deploy(version, path, args.max_ongoing)
        print(f"updated {version}", flush=True)
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
