import pytest

from baton.control.lifecycle import VersionState as S
from baton.control.policy import (
    Load,
    ModelView,
    Retire,
    Serve,
    VersionView,
    next_action,
    select_aspired,
)
from baton.settings import VersionPolicy

AVAILABLE = {1: "a", 2: "b", 3: "c", 5: "e"}


@pytest.mark.parametrize(
    ("policy", "kwargs", "expected"),
    [
        (VersionPolicy(), {}, [5]),
        (VersionPolicy(latest=2), {}, [3, 5]),
        (VersionPolicy(latest=10), {}, [1, 2, 3, 5]),
        (VersionPolicy(all=True), {}, [1, 2, 3, 5]),
        (VersionPolicy(specific=(2, 4)), {}, [2]),
        (VersionPolicy(), {"pinned": 2}, [2]),
        (VersionPolicy(), {"pinned": 4}, [5]),  # a pin on a vanished version falls back
        (VersionPolicy(), {"labelled": [1]}, [1, 5]),
        (VersionPolicy(), {"labelled": [9]}, [5]),
        (VersionPolicy(latest=2), {"pinned": 1, "labelled": [3]}, [1, 3]),
        (VersionPolicy(all=True), {"disabled": True}, []),
    ],
)
def test_select_aspired(policy, kwargs, expected):
    chosen = select_aspired(AVAILABLE, policy, **kwargs)
    assert list(chosen) == expected
    assert all(chosen[v] == AVAILABLE[v] for v in chosen)


def test_version_policy_rejects_two_choices():
    with pytest.raises(ValueError, match="exactly one"):
        VersionPolicy(latest=1, all=True)


def view(aspired, **versions):
    """aspired: {version: fingerprint}; versions: v<N>=(state, fingerprint)."""
    return ModelView(
        "m",
        aspired,
        {int(k[1:]): VersionView(state, fp) for k, (state, fp) in versions.items()},
    )


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        # nothing known yet: load the newest aspired version first
        (view({1: "a", 2: "b"}), Load("m", 2)),
        (view({2: "b"}, v2=(S.READY, "b")), Serve("m", 2)),
        # availability-preserving: old keeps serving until the new one serves
        (view({2: "b"}, v1=(S.SERVING, "a")), Load("m", 2)),
        (view({2: "b"}, v1=(S.SERVING, "a"), v2=(S.READY, "b")), Serve("m", 2)),
        (view({2: "b"}, v1=(S.SERVING, "a"), v2=(S.SERVING, "b")), Retire("m", 1)),
        # a failed new version leaves the old one serving, and is not retried unchanged
        (view({2: "b"}, v1=(S.SERVING, "a"), v2=(S.FAILED, "b")), None),
        # ... but is retried once its files change
        (view({2: "b2"}, v1=(S.SERVING, "a"), v2=(S.FAILED, "b")), Load("m", 2)),
        # while a version loads, nothing else starts loading for that model
        (view({3: "c"}, v1=(S.SERVING, "a"), v2=(S.LOADING, "b")), None),
        # an unloaded version that is aspired again (rollback) is loaded again
        (view({1: "a"}, v1=(S.UNLOADED, "a"), v2=(S.SERVING, "b")), Load("m", 1)),
        # a draining version is not reloaded until it has unloaded
        (view({1: "a"}, v1=(S.DRAINING, "a"), v2=(S.SERVING, "b")), None),
        # model removed from the source: retire everything
        (view({}, v1=(S.SERVING, "a")), Retire("m", 1)),
        (view({}, v1=(S.READY, "a")), Retire("m", 1)),
        (view({}, v1=(S.UNLOADED, "a"), v2=(S.FAILED, "b")), None),
        # steady state
        (view({2: "b"}, v2=(S.SERVING, "b"), v1=(S.UNLOADED, "a")), None),
        # a loaded version nobody aspires to is retired once an aspired one serves
        (view({3: "c"}, v2=(S.READY, "b"), v3=(S.SERVING, "c")), Retire("m", 2)),
        # latest 2: both serve, nothing to do
        (view({2: "b", 3: "c"}, v2=(S.SERVING, "b"), v3=(S.SERVING, "c")), None),
    ],
)
def test_next_action(model, expected):
    assert next_action([model]) == expected


def test_next_action_orders_loads_before_serves_before_retires_across_models():
    a = ModelView("a", {1: "x"}, {1: VersionView(S.READY, "x")})
    b = ModelView("b", {2: "y"}, {1: VersionView(S.SERVING, "w"), 2: VersionView(S.SERVING, "y")})
    c = ModelView("c", {1: "z"}, {})
    assert next_action([a, b, c]) == Load("c", 1)
    assert next_action([a, b]) == Serve("a", 1)
    assert next_action([b]) == Retire("b", 1)
