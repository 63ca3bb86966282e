"""Regenerate ``inference_pb2.py`` from ``inference.proto`` (``make proto``; needs grpcio-tools).

The generated module is built into a private descriptor pool instead of protobuf's default one:
clients such as tritonclient register the same ``inference.*`` names in the default pool, and
both must be importable in one process.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

__all__ = ["generate"]

HERE = Path(__file__).resolve().parent
DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
PRIVATE_POOL = "_descriptor_pool.DescriptorPool().AddSerializedFile("


def generate() -> str:
    """The text ``inference_pb2.py`` should have."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as out:
        code = protoc.main(["protoc", f"-I{HERE}", f"--python_out={out}", "inference.proto"])
        if code != 0:
            raise RuntimeError(f"protoc failed with {code}")
        text = (Path(out) / "inference_pb2.py").read_text()
    if text.count(DEFAULT_POOL) != 1:
        raise RuntimeError("unexpected protoc output: cannot move it to a private pool")
    return text.replace(DEFAULT_POOL, PRIVATE_POOL)


if __name__ == "__main__":
    (HERE / "inference_pb2.py").write_text(generate())
    sys.stdout.write(f"wrote {HERE / 'inference_pb2.py'}\n")
