"""TF Serving's warm-up file: ``<SavedModel>/assets.extra/tf_serving_warmup_requests``.

A TFRecord file of ``tensorflow.serving.PredictionLog`` messages. Only their predict requests
matter here, so rather than depend on the tensorflow-serving-api package, the few fields on the
way to the input tensors are read straight from the protobuf wire format::

    PredictionLog { PredictLog predict_log = 6; }
    PredictLog    { PredictRequest request = 1; }
    PredictRequest { map<string, TensorProto> inputs = 2; }   // entries: key = 1, value = 2

The tensors themselves are ``tensorflow.TensorProto`` messages, which TensorFlow decodes.
Classify, regress and multi-inference logs are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["WARMUP_FILE", "read_warmup_requests"]

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def fields(data: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of each field of one message."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = data[i : i + 8], i + 8
        elif wire == 2:
            size, i = _varint(data, i)
            value, i = data[i : i + size], i + size
        elif wire == 5:
            value, i = data[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _field(data: bytes, number: int) -> list[bytes]:
    return [v for n, w, v in fields(data) if n == number and w == 2]


def read_warmup_requests(saved_model: Path, tf) -> list[dict[str, np.ndarray]] | None:
    """The predict requests of the SavedModel's warm-up file, or ``None`` when it has none."""
    path = saved_model / WARMUP_FILE
    if not path.is_file():
        return None
    requests = []
    for record in tf.data.TFRecordDataset(str(path)):
        for predict_log in _field(record.numpy(), 6):
            for request in _field(predict_log, 1):
                inputs = {}
                for entry in _field(request, 2):
                    key = _field(entry, 1)[0].decode()
                    proto = tf.make_tensor_proto(0)  # a TensorProto to parse into
                    proto.ParseFromString(_field(entry, 2)[0])
                    inputs[key] = tf.make_ndarray(proto)
                requests.append(inputs)
    return requests
