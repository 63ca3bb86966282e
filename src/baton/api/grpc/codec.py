"""gRPC infer messages ↔ data-plane objects.

Inputs arrive either as typed ``contents`` (one repeated field per datatype family) or as
``raw_input_contents`` (one entry per input, the same bytes as the HTTP binary extension).
Outputs always go back as ``raw_output_contents``, as Triton does; clients decode them by the
output's datatype and shape.
"""

from __future__ import annotations

import numpy as np

from baton.api.dataplane import InferRequest, InferResponse
from baton.api.grpc import inference_pb2 as pb
from baton.errors import InvalidRequest
from baton.serving.codec import decode_raw, element_count, encode_raw
from baton.types import DATATYPES

__all__ = ["decode_request", "encode_response"]

#: v2 datatype → the InferTensorContents field that carries it (FP16/BF16: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


#: The numpy type of each contents field as it travels (before narrowing to the datatype).
_WIRE_DTYPE = {
    "bool_contents": np.bool_,
    "int_contents": np.int32,
    "int64_contents": np.int64,
    "uint_contents": np.uint32,
    "uint64_contents": np.uint64,
    "fp32_contents": np.float32,
    "fp64_contents": np.float64,
}


def _typed(tensor: pb.ModelInferRequest.InferInputTensor) -> np.ndarray:
    name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
    if datatype not in DATATYPES:
        raise InvalidRequest(f"tensor '{name}': unknown datatype {datatype!r}")
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidRequest(f"tensor '{name}': {datatype} must be sent as raw_input_contents")
    count = element_count(name, shape)
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidRequest(
            f"tensor '{name}': shape {shape} needs {count} elements, {field} has {len(values)}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    dtype = DATATYPES[datatype]
    array = np.asarray(values, dtype=_WIRE_DTYPE[field])
    if dtype.kind in "iu" and array.size:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise InvalidRequest(f"tensor '{name}': values out of range for {datatype}")
    return array.astype(dtype).reshape(shape)


def decode_request(message: pb.ModelInferRequest) -> InferRequest:
    """An :class:`InferRequest` from a ModelInferRequest; malformed ones raise InvalidRequest."""
    if not message.inputs:
        raise InvalidRequest("the request has no inputs")
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise InvalidRequest(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs"
        )
    inputs: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    for i, tensor in enumerate(message.inputs):
        if tensor.name in inputs:
            raise InvalidRequest(f"input '{tensor.name}' appears twice")
        if raw:
            array = decode_raw(tensor.name, tensor.datatype, list(tensor.shape), raw[i])
        else:
            array = _typed(tensor)
        inputs[tensor.name] = array
        datatypes[tensor.name] = tensor.datatype
    outputs = [o.name for o in message.outputs] or None
    parameters = {
        key: getattr(value, choice)
        for key, value in message.parameters.items()
        if (choice := value.WhichOneof("parameter_choice")) is not None
    }
    return InferRequest(inputs, datatypes, outputs, message.id or None, parameters)


def encode_response(response: InferResponse) -> pb.ModelInferResponse:
    message = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=response.model_version,
        id=response.id or "",
    )
    for out in response.outputs:
        message.outputs.add(name=out.name, datatype=out.datatype, shape=out.data.shape)
        message.raw_output_contents.append(encode_raw(out.data, out.datatype))
    return message
