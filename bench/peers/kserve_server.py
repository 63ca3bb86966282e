"""KServe's Python model server wrapping onnxruntime, used only to compare against Baton.

Runs inside KServe's own venv:

    python kserve_server.py MODELS_DIR NAME HTTP_PORT GRPC_PORT

``MODELS_DIR/NAME/<version>/model.onnx``; the newest version directory is served. New versions
arrive the way KServe's multi-model agent delivers them: files written into the model
directory, then ``POST /v2/repository/models/NAME/load`` (the model repository extension), which
calls ``ModelRepository.load`` here: it loads the new version and ``update``s the repository.
"""

import logging
import os
import sys

import kserve
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, ModelRepository


def newest(model_dir: str) -> int:
    return max(int(d) for d in os.listdir(model_dir) if d.isdigit())


class OnnxModel(kserve.Model):
    def __init__(self, name: str, model_dir: str, version: int):
        super().__init__(name)
        self.path = os.path.join(model_dir, str(version), "model.onnx")
        self.version = str(version)

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.ready = True
        return self.ready

    async def predict(self, payload: InferRequest, headers=None, response_headers=None):
        feeds = {i.name: i.as_numpy() for i in payload.inputs}
        results = self.session.run(self.outputs, feeds)
        outputs = []
        for name, result in zip(self.outputs, results, strict=True):
            output = InferOutput(name=name, shape=list(result.shape), datatype="FP32")
            output.set_data_from_numpy(result, binary_data=False)
            outputs.append(output)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            model_version=self.version,
            infer_outputs=outputs,
            from_grpc=payload.from_grpc,
        )


class OnnxRepository(ModelRepository):
    """Like KServe's own servers' repositories (sklearnserver, ...): ``load`` builds the model
    from the models directory and replaces the registered one once it is ready."""

    async def load(self, name: str) -> bool:
        model_dir = os.path.join(self.models_dir, name)
        model = OnnxModel(name, model_dir, newest(model_dir))
        if model.load():
            self.update(model)
        return model.ready


def main() -> None:
    models_dir, name, http_port, grpc_port = sys.argv[1:5]
    model_dir = os.path.join(models_dir, name)
    model = OnnxModel(name, model_dir, newest(model_dir))
    model.load()
    server = kserve.ModelServer(
        http_port=int(http_port),
        grpc_port=int(grpc_port),
        workers=1,
        registered_models=OnnxRepository(models_dir),
        enable_latency_logging=False,
    )
    # Per-request log lines off, as on every server compared (KServe logs each request's
    # timing on "kserve.trace" from a middleware that no flag turns off).
    for logger in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main()
