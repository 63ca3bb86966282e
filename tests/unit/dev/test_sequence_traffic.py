"""The ground truth the sequence tests and bench/sequences.py check every answer against."""

from __future__ import annotations

import pytest

from baton.dev.sequence_traffic import HOOK_STEP, answer_matches, expected_state


@pytest.mark.parametrize(
    ("total", "previous", "version", "x", "mode", "hook", "expected"),
    [
        (0.0, None, 1, 3.0, "drain", False, 3.0),  # START on v1
        (3.0, 1, 1, 2.0, "drain", False, 5.0),  # a step on the same version
        (0.0, None, 2, 3.0, "drain", False, 6.0),  # START on v2: x * version
        (3.0, 1, 2, 2.0, "drain", False, None),  # drain: a sequence never moves
        (3.0, 1, 2, 2.0, "migrate", False, 7.0),  # carried by name: state kept, then x * 2
        (3.0, 1, 3, 2.0, "migrate", True, 3.0 + 2 * HOOK_STEP + 6.0),  # the hook, two versions up
        (3.0, 2, 1, 1.0, "migrate", True, 3.0 - HOOK_STEP + 1.0),  # a rollback moves it down
    ],
)
def test_expected_state(total, previous, version, x, mode, hook, expected):
    assert expected_state(total, previous, version, x, mode, hook) == expected


@pytest.mark.parametrize(
    ("y", "expected", "matches"),
    [(5.0, 5.0, True), (5.00001, 5.0, True), (5.01, 5.0, False), (1e6 + 50, 1e6, True),
     (1e6 + 200, 1e6, False), (0.0, 0.0, True), (-3.0, 3.0, False)],
)  # fmt: skip
def test_answer_matches_to_float32_precision(y, expected, matches):
    assert answer_matches(y, expected) is matches
