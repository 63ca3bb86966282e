"""HTTP inference fuzzed: JSON bodies, the binary tensor data extension, Content-Encoding and
model paths, sent to ``POST /v2/models/{m}[/versions/{v}]/infer`` of a real server. Every case
is answered without a 5xx, valid ones with the right values, and good traffic never fails."""

from __future__ import annotations

import pytest
from hypothesis import given

from tests.fuzz.conftest import TIMEOUT, assert_clean
from tests.fuzz.strategies import (
    fuzz_settings,
    http_binary_cases,
    http_encoding_cases,
    http_json_cases,
    http_path_cases,
)

pytestmark = pytest.mark.timeout(TIMEOUT)


@fuzz_settings("http_json")
@given(case=http_json_cases())
def test_json_bodies(http, case):
    """Valid bodies for every datatype (flat or nested data, some outputs asked for) get 200
    and the right values; almost-valid ones (wrong datatypes, shapes, nesting, huge or
    60-100-dimensional shapes, missing fields, wrong types, duplicate or extra inputs, odd
    parameters, non-UTF-8 strings, NaN, 1e999) and garbage (random bytes, truncated JSON,
    100,000-deep nesting, bodies over the limit) get a 4xx, never a 5xx."""
    assert_clean(http.check(case))


@fuzz_settings("http_binary")
@given(case=http_binary_cases())
def test_binary_tensor_data(http, case):
    """The binary extension: right sizes get 200 and the right values (binary outputs asked
    for too); lying ``binary_data_size``, ``Inference-Header-Content-Length`` off by a few
    bytes, negative, huge or not a number, BYTES length prefixes that run past the data or
    stop inside a prefix, trailing and missing bytes get a 4xx, never a 5xx."""
    assert_clean(http.check(case))


@fuzz_settings("http_encoding")
@given(case=http_encoding_cases())
def test_content_encoding(http, case):
    """gzip and deflate bodies decompress to the right answer; junk, truncated streams, the
    other algorithm, raw deflate, double compression, a bomb past the body limit and unknown
    encodings (with odd ``x-baton-session`` values alongside) get a 4xx, never a 5xx."""
    assert_clean(http.check(case))


@fuzz_settings("http_paths")
@given(case=http_path_cases())
def test_model_paths(http, case):
    """Metadata, readiness and infer paths naming unknown models, labels and versions
    (Unicode digits, superscripts, signs, huge numbers) with any method: never a 5xx."""
    assert_clean(http.check(case))
