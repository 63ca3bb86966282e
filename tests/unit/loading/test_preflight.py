"""Memory pre-flight decisions, from a table."""

import pytest

from baton.loading.preflight import estimate_bytes, plan_memory

MiB = 2**20


@pytest.mark.parametrize(
    ("files", "previous", "expected"),
    [
        (100 * MiB, None, 200 * MiB),  # twice the files: ORT's peak while loading
        (100 * MiB, (150 * MiB, 100 * MiB), 150 * MiB),  # as the last version measured
        (200 * MiB, (150 * MiB, 100 * MiB), 300 * MiB),  # scaled by the files
        (100 * MiB, (0, 100 * MiB), 200 * MiB),  # a useless measurement is ignored
    ],
)
def test_estimate(files, previous, expected):
    assert estimate_bytes(files, previous) == expected


@pytest.mark.parametrize(
    ("estimate", "available", "in_use", "options", "decision"),
    [
        (100, 1000, 0, {}, "beside"),
        (100, 1000, 0, {"headroom": 900}, "beside"),  # exactly the headroom left
        (100, 1000, 0, {"headroom": 901}, "refuse"),
        (100, 1000, 500, {"budget": 600}, "beside"),
        (100, 1000, 550, {"budget": 600}, "refuse"),
        (100, 1000, 550, {"budget": 600, "when_short": "retire_first", "retirable": 50},
         "retire_first"),
        (100, 1000, 550, {"budget": 600, "when_short": "retire_first", "retirable": 10},
         "refuse"),  # retiring would not free enough
        (100, 50, 0, {"when_short": "retire_first", "retirable": 60}, "retire_first"),
        (100, 50, 0, {"when_short": "retire_first", "retirable": 0}, "refuse"),  # nothing to retire
        (100, 50, 0, {"when_short": "refuse", "retirable": 60}, "refuse"),
    ],
)  # fmt: skip
def test_plan(estimate, available, in_use, options, decision):
    plan = plan_memory(estimate, available, in_use, **options)
    assert plan.decision == decision
    assert plan.reason
