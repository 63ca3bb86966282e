"""The gRPC floors for bench/throughput.py: what a v2 ``ModelInfer`` costs a Python gRPC server
before any of Baton's work.

    python bench/bare_grpc_server.py MODEL.onnx PORT        # grpcio: parse, run, answer
    python bench/bare_grpc_server.py --empty ANSWER PORT     # grpcio: the bytes in file ANSWER
    bench/.venv-grpclib/bin/python bench/bare_grpc_server.py --empty ANSWER --grpclib PORT

The first is the gRPC twin of bench/bare_server.py: a synchronous ``grpc.server`` whose worker
threads parse the request, run the session and encode the answer, as Baton's gRPC path does,
with no routing, validation, metrics or swap machinery. ``--empty`` answers every call with the
same pre-encoded response (a file's bytes) without reading the request or running a model: the
transport's own cost per call, which no server built on that library can go below.
``--grpclib`` serves that empty answer with grpclib (asyncio and the pure-Python h2) instead of
grpcio's C core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SERVICE = "inference.GRPCInferenceService"


def serve_grpcio(port: int, model: str | None, answer: bytes) -> None:
    import grpc

    if model is None:

        def infer(request: bytes, context) -> bytes:
            return answer

    else:
        import numpy as np
        import onnxruntime as ort
        from tritonclient.grpc import service_pb2 as pb

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]

        def infer(request: bytes, context) -> bytes:
            message = pb.ModelInferRequest.FromString(request)
            feed = {
                t.name: np.frombuffer(raw, np.float32).reshape(tuple(t.shape))
                for t, raw in zip(message.inputs, message.raw_input_contents, strict=True)
            }
            results = session.run(names, feed)
            response = pb.ModelInferResponse(model_name=message.model_name, model_version="1")
            for name, result in zip(names, results, strict=True):
                response.outputs.add(name=name, datatype="FP32", shape=result.shape)
                response.raw_output_contents.append(result.tobytes())
            return response.SerializeToString()

    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)}
    )
    server = grpc.server(
        ThreadPoolExecutor(os.cpu_count() or 2), handlers=[handler],
        options=[("grpc.so_reuseport", 0)],
    )  # fmt: skip
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def serve_grpclib(port: int, answer: bytes) -> None:
    from grpclib.const import Cardinality, Handler
    from grpclib.encoding.base import CodecBase
    from grpclib.server import Server

    class Raw(CodecBase):  # bytes in, bytes out
        __content_subtype__ = "proto"

        def encode(self, message, message_type):
            return message

        def decode(self, data, message_type):
            return data

    class Service:
        async def infer(self, stream) -> None:
            await stream.recv_message()
            await stream.send_message(answer)

        def __mapping__(self):
            handler = Handler(self.infer, Cardinality.UNARY_UNARY, bytes, bytes)
            return {f"/{SERVICE}/ModelInfer": handler}

    async def main() -> None:
        server = Server([Service()], codec=Raw())
        await server.start("127.0.0.1", port)
        await server.wait_closed()

    asyncio.run(main())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", help="the ONNX model (not with --empty)")
    parser.add_argument("port", type=int)
    parser.add_argument("--empty", metavar="ANSWER", help="answer this file's bytes, no model")
    parser.add_argument("--grpclib", action="store_true", help="grpclib instead of grpcio")
    args = parser.parse_args()
    if (args.empty is None) == (args.model is None) or (args.grpclib and args.empty is None):
        parser.error("give MODEL.onnx, or --empty ANSWER (with or without --grpclib)")
    answer = b"" if args.empty is None else Path(args.empty).read_bytes()
    if args.grpclib:
        serve_grpclib(args.port, answer)
    else:
        serve_grpcio(args.port, args.model, answer)
