"""The admin API fuzzed: requests that schemathesis draws from ``/admin/openapi.json``, and
number-like query values and arbitrary bodies. The API changes state (pins, rollbacks, labels,
rollouts) as it goes; it must never answer a 5xx, and good traffic must never notice."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import TIMEOUT, assert_clean
from tests.fuzz.strategies import (
    AdminProbe,
    admin_cases,
    admin_operations,
    admin_value_cases,
    fuzz_settings,
)

pytestmark = pytest.mark.timeout(TIMEOUT)


@pytest.fixture(scope="module")
def admin(fuzz_server):
    """The probe and one strategy per operation (and generation mode) of the server's own
    OpenAPI description."""
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/admin/openapi.json")
    probe = AdminProbe(fuzz_server)
    yield probe, admin_operations(schema)
    probe.close()


@fuzz_settings("admin_schema")
@given(data=st.data())
def test_schemathesis_requests_never_get_a_5xx(admin, data):
    """Positive and negative schemathesis cases for every admin operation, their path
    parameters mostly naming real models, labels and rollout actions and their bodies real
    versions (so pins, unpins, rollbacks, labels and rollouts take effect): no answer is a 5xx
    (or missing), and valid inference meanwhile is answered right every time."""
    probe, operations = admin
    assert_clean(probe.check(data.draw(admin_cases(operations), label="case")))


@fuzz_settings("admin_values")
@given(case=admin_value_cases())
def test_number_like_query_values_and_any_body_never_get_a_5xx(http, case):
    """``limit``, ``before`` and ``wait`` holding texts that look like numbers (Unicode digits
    that ``int`` reads, superscripts that ``str.isdigit`` accepts and ``int`` refuses, signs,
    exponents, huge values) and pin/label/rollout bodies holding any JSON or none: refused
    with a 4xx or done, never a 5xx."""
    assert_clean(http.check(case))
