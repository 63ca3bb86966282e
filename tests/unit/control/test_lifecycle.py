import pytest

from baton.control.lifecycle import VersionState as S
from baton.control.lifecycle import check_transition

LEGAL = [
    (None, S.DISCOVERED),
    (S.DISCOVERED, S.VERIFYING),
    (S.VERIFYING, S.LOADING),
    (S.LOADING, S.WARMING),
    (S.WARMING, S.READY),
    (S.READY, S.SERVING),
    (S.READY, S.DRAINING),
    (S.SERVING, S.DRAINING),
    (S.DRAINING, S.UNLOADED),
    (S.UNLOADED, S.DISCOVERED),
    # a cancelled load ends UNLOADED once what it built is unloaded
    (S.DISCOVERED, S.UNLOADED),
    (S.VERIFYING, S.UNLOADED),
    (S.LOADING, S.UNLOADED),
    (S.WARMING, S.UNLOADED),
    (S.FAILED, S.DISCOVERED),
    *[(s, S.FAILED) for s in S if s not in (S.UNLOADED, S.FAILED)],
]

ILLEGAL = [
    (None, S.LOADING),
    (S.DISCOVERED, S.SERVING),
    (S.LOADING, S.SERVING),
    (S.WARMING, S.SERVING),
    (S.SERVING, S.UNLOADED),
    (S.READY, S.UNLOADED),
    (S.SERVING, S.READY),
    (S.DRAINING, S.SERVING),
    (S.UNLOADED, S.SERVING),
    (S.UNLOADED, S.FAILED),
    (S.FAILED, S.SERVING),
    (S.FAILED, S.FAILED),
]


@pytest.mark.parametrize(("current", "new"), LEGAL)
def test_legal_transitions(current, new):
    check_transition(current, new)


@pytest.mark.parametrize(("current", "new"), ILLEGAL)
def test_illegal_transitions_raise(current, new):
    with pytest.raises(ValueError, match=r"→|must start"):
        check_transition(current, new)


def test_every_state_has_a_way_forward():
    # No state is a dead end except by design: each one has at least one legal successor.
    for state in S:
        successors = [n for n in S if _legal(state, n)]
        assert successors, state


def _legal(a, b):
    try:
        check_transition(a, b)
    except ValueError:
        return False
    return True
