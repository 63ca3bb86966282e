"""The protobuf wire reader behind TF Serving's warm-up file (no TensorFlow needed)."""

from baton.runtimes.tf_warmup import fields


def test_fields_of_a_message():
    # field 1 varint 150; field 2 bytes "hi"; field 6 nested message {1: "x"}; field 3 fixed32
    data = bytes([0x08, 0x96, 0x01, 0x12, 0x02]) + b"hi" + bytes([0x32, 0x03, 0x0A, 0x01]) + b"x"
    data += bytes([0x1D, 1, 0, 0, 0])
    assert list(fields(data)) == [
        (1, 0, 150),
        (2, 2, b"hi"),
        (6, 2, b"\n\x01x"),
        (3, 5, b"\x01\0\0\0"),
    ]
    assert list(fields(b"\n\x01x")) == [(1, 2, b"x")]
