"""TorchServe custom handler wrapping onnxruntime, used only to compare against Baton.

Runs inside TorchServe's Python worker (its own venv). Answers KServe v2 JSON requests
(``POST /v2/models/<name>/infer``, which TorchServe's frontend routes to the default version) and
Open Inference Protocol gRPC requests (which the frontend turns into the same JSON) with a v2
JSON response naming the version that computed it.
"""

import json
import os

import numpy as np
import onnxruntime as ort

DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


class OnnxHandler:
    def initialize(self, context) -> None:
        properties = context.system_properties
        manifest = context.manifest
        path = os.path.join(properties["model_dir"], manifest["model"]["serializedFile"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.name = manifest["model"]["modelName"]
        self.version = manifest["model"].get("modelVersion", "1")

    def handle(self, data, context):
        answers = []
        for row in data:
            body = row.get("body") if row.get("body") is not None else row.get("data")
            if isinstance(body, bytes | bytearray):
                body = json.loads(body)
            feeds = {
                t["name"]: np.asarray(t["data"], DTYPES[t["datatype"]]).reshape(t["shape"])
                for t in body["inputs"]
            }
            results = self.session.run(self.outputs, feeds)
            answers.append(
                {
                    "id": body.get("id", ""),
                    "model_name": self.name,
                    "model_version": self.version,
                    "outputs": [
                        {
                            "name": n,
                            "datatype": "FP32",
                            "shape": list(r.shape),
                            "data": r.ravel().tolist(),
                        }
                        for n, r in zip(self.outputs, results, strict=True)
                    ],
                }
            )
        return answers
