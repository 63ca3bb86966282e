import numpy as np
import pytest

from baton.errors import InvalidRequest
from baton.serving.codec import decode_json, decode_raw, encode_json, encode_raw
from baton.types import DATATYPES

SAMPLES = {
    "BOOL": [True, False, True, True],
    "UINT8": [0, 1, 254, 255],
    "UINT16": [0, 1, 65534, 65535],
    "UINT32": [0, 1, 2**32 - 2, 2**32 - 1],
    "UINT64": [0, 1, 2**63, 2**64 - 1],
    "INT8": [-128, -1, 0, 127],
    "INT16": [-32768, -1, 0, 32767],
    "INT32": [-(2**31), -1, 0, 2**31 - 1],
    "INT64": [-(2**63), -1, 0, 2**63 - 1],
    "FP16": [-1.5, 0.0, 0.25, 65504.0],
    "FP32": [-1.5, 0.0, 0.25, 2.0**100],
    "FP64": [-1.5, 0.0, 0.25, 1e300],
    "BYTES": ["a", "", "héllo", "x" * 50],
    "BF16": [-1.5, 0.0, 0.25, 2.0],
}


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_json_and_raw_round_trip_every_datatype(datatype):
    data = SAMPLES[datatype]
    array = decode_json("t", datatype, [2, 2], data)
    assert array.shape == (2, 2)
    again = decode_raw("t", datatype, [2, 2], encode_raw(array, datatype))
    assert again.shape == (2, 2)
    np.testing.assert_array_equal(again, array)
    back = encode_json(array, datatype, "t")
    expected = [s.encode() for s in data] if datatype == "BYTES" else data
    if datatype == "BYTES":
        assert [b.encode() for b in back] == expected
    else:
        np.testing.assert_array_equal(
            np.asarray(back, dtype=np.float64), np.asarray(expected, dtype=np.float64)
        )


def test_nested_json_data_is_accepted():
    array = decode_json("t", "INT32", [2, 2], [[1, 2], [3, 4]])
    assert array.tolist() == [[1, 2], [3, 4]]


def test_raw_decoding_does_not_copy():
    raw = np.arange(6, dtype=np.float32).tobytes()
    array = decode_raw("t", "FP32", [2, 3], memoryview(raw))
    assert not array.flags.owndata


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "message"),
    [
        ("FP33", [1], [1.0], "unknown datatype"),
        ("FP32", [2, 2], [1.0, 2.0, 3.0], "needs 4 elements, data has 3"),
        ("FP32", [-1, 2], [1.0, 2.0], "non-negative integers"),
        ("FP32", "2", [1.0, 2.0], "non-negative integers"),
        ("FP32", [2], ["a", "b"], "must hold numbers"),
        ("INT32", [2], [1.5, 2.5], "must hold integers"),
        ("BOOL", [2], [1, 0], "must hold booleans"),
        ("BYTES", [2], [1, 2], "BYTES elements must be strings"),
        ("FP32", [2, 2], [[1.0], [2.0, 3.0]], "not a valid FP32 array"),  # ragged
        ("FP32", [2], [[1.0], [2.0]], "nests deeper than its shape"),
        ("FP32", [2], [[[[[[1.0]]]]]], "nests deeper than its shape"),
        ("FP32", [2**20, 2**20, 2**20], [1.0], "at most 2147483648 are accepted"),
        ("UINT8", [1], [300], "out of range for UINT8"),
        ("UINT64", [1], [-1], "out of range for UINT64"),
        ("INT8", [1], [True], "must hold integers"),
    ],
)
def test_json_errors(datatype, shape, data, message):
    with pytest.raises(InvalidRequest, match=message):
        decode_json("t", datatype, shape, data)


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "message"),
    [
        ("FP32", [2], b"\x00" * 7, "needs 8 bytes, got 7"),
        ("BYTES", [1], b"\x05\x00\x00\x00abc", "runs past the end"),
        ("BYTES", [1], b"\x05\x00", "inside a length prefix"),
        ("BYTES", [2], b"\x01\x00\x00\x00a", "needs 2 elements, data has 1"),
    ],
)
def test_raw_errors(datatype, shape, raw, message):
    with pytest.raises(InvalidRequest, match=message):
        decode_raw("t", datatype, shape, raw)


def test_non_utf8_bytes_output_needs_binary():
    array = np.array([b"\xff\xfe"], dtype=object)
    with pytest.raises(InvalidRequest, match="binary_data"):
        encode_json(array, "BYTES", "out")
    assert encode_raw(array, "BYTES") == b"\x02\x00\x00\x00\xff\xfe"
