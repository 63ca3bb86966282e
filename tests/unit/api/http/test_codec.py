import gzip

import numpy as np
import orjson
import pytest

from baton.api.dataplane import InferResponse, OutputTensor
from baton.api.http.codec import decompress, encode_response, parse_request
from baton.errors import InvalidRequest, PayloadTooLarge


def body_with_binary(header: dict, *blobs: bytes) -> tuple[bytes, str]:
    h = orjson.dumps(header)
    return h + b"".join(blobs), str(len(h))


def test_json_request():
    body = orjson.dumps(
        {
            "id": "r1",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    )
    parsed = parse_request(body, None)
    assert parsed.request.id == "r1" and parsed.request.outputs == ["y"]
    assert parsed.request.inputs["x"].tolist() == [[1.0, 2.0]]
    assert parsed.binary_outputs == {"y": True} and not parsed.binary_default


def test_binary_request_mixed_with_json_inputs():
    a = np.arange(4, dtype=np.int32)
    header = {
        "inputs": [
            {
                "name": "a",
                "datatype": "INT32",
                "shape": [4],
                "parameters": {"binary_data_size": 16},
            },
            {"name": "b", "datatype": "BYTES", "shape": [1], "data": ["hi"]},
            {"name": "c", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}},
        ],
        "parameters": {"binary_data_output": True},
    }
    body, length = body_with_binary(header, a.tobytes(), b"\x02\x00\x00\x00ok")
    parsed = parse_request(body, length)
    assert parsed.request.inputs["a"].tolist() == [0, 1, 2, 3]
    assert parsed.request.inputs["b"].tolist() == [b"hi"]
    assert parsed.request.inputs["c"].tolist() == [b"ok"]
    assert parsed.binary_default


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[]", None, "must be a JSON object"),
        (b"{}", None, "'inputs' must be a non-empty list"),
        (b'{"inputs": [1]}', None, "inputs\\[0\\] must be a JSON object"),
        (b'{"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}', None, "'name'"),
        (b'{"inputs": [{"name": "x", "shape": [1], "data": [1]}]}', None, "'datatype'"),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}',
            None,
            "neither 'data' nor binary_data_size",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]},'
            b'{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}',
            None,
            "twice",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],'
            b'"outputs": {}}',
            None,
            "'outputs' must be a list",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],"id": 5}',
            None,
            "'id' must be a string",
        ),
        (b"{}", "abc", "must be an integer"),
        (b"{}", "99", "outside"),
    ],
)
def test_malformed_requests(body, length, message):
    with pytest.raises(InvalidRequest, match=message):
        parse_request(body, length)


def test_binary_sizes_must_match_the_data():
    header = {
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}
        ]
    }
    body, length = body_with_binary(header, b"\x00" * 4)
    with pytest.raises(InvalidRequest, match="does not fit"):
        parse_request(body, length)
    body, length = body_with_binary(header, b"\x00" * 12)
    with pytest.raises(InvalidRequest, match="4 bytes of binary data belong to no input"):
        parse_request(body, length)


def test_response_json_and_binary():
    out = InferResponse(
        "m",
        "3",
        [
            OutputTensor("y", "FP32", np.ones((1, 2), np.float32)),
            OutputTensor("s", "BYTES", np.array([b"a"], dtype=object)),
        ],
        "id1",
    )
    parsed = parse_request(
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],'
        b'"outputs": [{"name": "y", "parameters": {"binary_data": true}}, {"name": "s"}]}',
        None,
    )
    body, headers = encode_response(out, parsed)
    n = int(headers["Inference-Header-Content-Length"])
    doc = orjson.loads(body[:n])
    assert doc["model_version"] == "3" and doc["id"] == "id1"
    assert doc["outputs"][0]["parameters"]["binary_data_size"] == 8
    assert doc["outputs"][1]["data"] == ["a"]
    assert np.frombuffer(body[n:], np.float32).tolist() == [1.0, 1.0]


def test_decompress():
    raw = b'{"a": 1}' * 10
    assert decompress(gzip.compress(raw), "gzip", 1000) == raw
    with pytest.raises(PayloadTooLarge):
        decompress(gzip.compress(raw), "gzip", 10)
    with pytest.raises(InvalidRequest, match="not valid gzip"):
        decompress(b"nope", "gzip", 1000)
    with pytest.raises(InvalidRequest, match="unsupported"):
        decompress(raw, "br", 1000)
