"""gRPC inference fuzzed: mutated ``ModelInferRequest`` messages and bytes that are no protobuf
message, as generic unary calls to a real server. No answer may be ``INTERNAL`` or ``UNKNOWN``,
valid messages get the right values, and good traffic (HTTP and gRPC) never fails."""

from __future__ import annotations

import pytest
from hypothesis import given

from tests.fuzz.conftest import TIMEOUT, assert_clean
from tests.fuzz.strategies import fuzz_settings, grpc_bytes_cases, grpc_message_cases

pytestmark = pytest.mark.timeout(TIMEOUT)
GOOD_TRAFFIC = ("http", "grpc")


@fuzz_settings("grpc_messages")
@given(case=grpc_message_cases())
def test_infer_messages(grpc_probe, case):
    """Valid messages (typed contents or raw_input_contents, every datatype) are answered with
    the right values; mutated ones (raw contents of the wrong size or count, typed contents in
    the wrong field, unknown datatypes, negative, huge or 60-100-dimensional shapes, unknown
    parameters, missing, duplicate or extra inputs, unknown outputs, odd model names and
    versions) get a status naming the client's mistake, never INTERNAL or UNKNOWN."""
    assert_clean(grpc_probe.check(case))


@fuzz_settings("grpc_bytes")
@given(case=grpc_bytes_cases())
def test_bytes_that_are_not_a_message(grpc_probe, case):
    """Random bytes, flipped bits, truncated messages, lengths past the end, string fields
    holding invalid UTF-8, wire types 6 and 7, unterminated groups, sent to ModelInfer and
    other RPCs: answered INVALID_ARGUMENT (or, when they happen to parse, as the message they
    are), never INTERNAL or UNKNOWN."""
    assert_clean(grpc_probe.check(case))
