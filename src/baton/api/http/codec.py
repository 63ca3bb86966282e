"""Open Inference Protocol HTTP bodies ↔ data-plane objects, with the binary tensor extension.

A request body is a JSON object, optionally followed by binary tensor data; the
``Inference-Header-Content-Length`` header then gives the JSON part's length, and each binary
input says its byte count in ``parameters.binary_data_size`` (data follows in input order).
Outputs are returned as binary when the request asks (``parameters.binary_data_output`` for
all, or ``outputs[i].parameters.binary_data``), with the same header on the response.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import orjson

from baton.api.dataplane import InferRequest, InferResponse
from baton.errors import InvalidRequest, PayloadTooLarge
from baton.serving.codec import decode_json, decode_raw, encode_json, encode_raw

__all__ = ["HEADER_LENGTH", "ParsedRequest", "decompress", "encode_response", "parse_request"]

HEADER_LENGTH = "Inference-Header-Content-Length"
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


@dataclass(slots=True)
class ParsedRequest:
    request: InferRequest
    binary_default: bool = False
    binary_outputs: dict[str, bool] = field(default_factory=dict)


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding: gzip|deflate`` without inflating past ``limit`` bytes."""
    if not encoding or encoding == "identity":
        return body
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}.get(encoding.lower())
    if wbits is None:
        raise InvalidRequest(f"unsupported Content-Encoding {encoding!r} (use gzip or deflate)")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidRequest(f"body is not valid {encoding}: {exc}") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"decompressed body exceeds {limit} bytes")
    return out


def _object(value: object, what: str) -> dict:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{what} must be a JSON object")
    return value


def parse_request(body: bytes, header_length: str | None) -> ParsedRequest:
    """Decode an infer request body; every structural problem is an :class:`InvalidRequest`."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise InvalidRequest(f"{HEADER_LENGTH} must be an integer") from None
        if not 0 <= n <= len(body):
            raise InvalidRequest(f"{HEADER_LENGTH} {n} is outside the {len(body)}-byte body")
        header, binary = body[:n], memoryview(body)[n:]
    else:
        header, binary = body, memoryview(b"")
    try:
        doc = _object(orjson.loads(header), "request body")
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None

    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidRequest("'inputs' must be a non-empty list")
    inputs, datatypes, offset = {}, {}, 0
    for i, item in enumerate(raw_inputs):
        item = _object(item, f"inputs[{i}]")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(f"inputs[{i}] needs a 'name' string")
        if name in inputs:
            raise InvalidRequest(f"input '{name}' appears twice")
        if not isinstance(datatype, str):
            raise InvalidRequest(f"input '{name}' needs a 'datatype' string")
        params = _object(item.get("parameters") or {}, f"input '{name}' parameters")
        size = params.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidRequest(
                    f"input '{name}': binary_data_size {size!r} does not fit the binary data"
                )
            array = decode_raw(name, datatype, shape, binary[offset : offset + size])
            offset += size
        elif "data" in item:
            array = decode_json(name, datatype, shape, item["data"])
        else:
            raise InvalidRequest(f"input '{name}' has neither 'data' nor binary_data_size")
        inputs[name], datatypes[name] = array, datatype
    if offset != len(binary):
        raise InvalidRequest(f"{len(binary) - offset} bytes of binary data belong to no input")

    params = _object(doc.get("parameters") or {}, "'parameters'")
    parsed = ParsedRequest(
        InferRequest(inputs, datatypes, None, _request_id(doc.get("id")), params),
        binary_default=params.get("binary_data_output") is True,
    )
    raw_outputs = doc.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidRequest("'outputs' must be a list")
        names = []
        for i, item in enumerate(raw_outputs):
            item = _object(item, f"outputs[{i}]")
            name = item.get("name")
            if not isinstance(name, str):
                raise InvalidRequest(f"outputs[{i}] needs a 'name' string")
            names.append(name)
            oparams = _object(item.get("parameters") or {}, f"output '{name}' parameters")
            if "binary_data" in oparams:
                parsed.binary_outputs[name] = oparams["binary_data"] is True
        parsed.request.outputs = names
    return parsed


def _request_id(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise InvalidRequest("'id' must be a string")


def encode_response(response: InferResponse, parsed: ParsedRequest) -> tuple[bytes, dict]:
    """The response body and the extra headers it needs."""
    outputs, blobs = [], []
    for out in response.outputs:
        entry: dict = {"name": out.name, "datatype": out.datatype, "shape": list(out.data.shape)}
        if parsed.binary_outputs.get(out.name, parsed.binary_default):
            raw = encode_raw(out.data, out.datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = encode_json(out.data, out.datatype, out.name)
        outputs.append(entry)
    doc: dict = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id is not None:
        doc["id"] = response.id
    doc["outputs"] = outputs
    header = orjson.dumps(doc, option=_DUMPS_OPTIONS)
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
