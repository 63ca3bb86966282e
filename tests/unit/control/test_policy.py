import pytest

from baton.control.lifecycle import VersionState as S
from baton.control.policy import (
    Cancel,
    Load,
    ModelView,
    Retire,
    Serve,
    VersionView,
    next_action,
    select_aspired,
    unusable_versions,
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


def view(aspired, unload=False, **versions):
    """aspired: {version: fingerprint}; versions: v<N>=(state, fingerprint[, flags])."""
    known = {}
    for k, (state, fp, *flags) in versions.items():
        known[int(k[1:])] = VersionView(state, fp, "retry" in flags, "cancelling" in flags)
    return ModelView("m", aspired, known, unload=unload)


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
        # ... but is retried once its files change, or an operator asks for it again
        (view({2: "b2"}, v1=(S.SERVING, "a"), v2=(S.FAILED, "b")), Load("m", 2)),
        (view({2: "b"}, v1=(S.SERVING, "a"), v2=(S.FAILED, "b", "retry")), Load("m", 2)),
        # while a version loads, nothing else starts loading for that model
        (view({3: "c"}, v1=(S.SERVING, "a"), v3=(S.LOADING, "c")), None),
        # a load nobody aspires to any more is cancelled (withdrawn, pinned elsewhere) ...
        (view({3: "c"}, v1=(S.SERVING, "a"), v2=(S.LOADING, "b")), Cancel("m", 2)),
        (view({1: "a"}, v1=(S.SERVING, "a"), v2=(S.DISCOVERED, "b")), Cancel("m", 2)),
        # ... once; while it winds down, the aspired version may start loading
        (view({3: "c"}, v1=(S.SERVING, "a"), v2=(S.WARMING, "b", "cancelling")), Load("m", 3)),
        # an unloaded version that is aspired again (rollback) is loaded again
        (view({1: "a"}, v1=(S.UNLOADED, "a"), v2=(S.SERVING, "b")), Load("m", 1)),
        # a draining version is not reloaded until it has unloaded
        (view({1: "a"}, v1=(S.DRAINING, "a"), v2=(S.SERVING, "b")), None),
        # an operator unloaded the model (or removed it from the source): retire everything
        (view({}, unload=True, v1=(S.SERVING, "a")), Retire("m", 1)),
        (view({}, unload=True, v1=(S.READY, "a")), Retire("m", 1)),
        (view({}, unload=True, v1=(S.UNLOADED, "a"), v2=(S.FAILED, "b")), None),
        # nothing usable offered, no operator unload: the serving version keeps serving
        (view({}, v1=(S.SERVING, "a")), None),
        (view({}, v1=(S.READY, "a")), Retire("m", 1)),
        # steady state
        (view({2: "b"}, v2=(S.SERVING, "b"), v1=(S.UNLOADED, "a")), None),
        # a loaded version nobody aspires to is retired once an aspired one serves
        (view({3: "c"}, v2=(S.READY, "b"), v3=(S.SERVING, "c")), Retire("m", 2)),
        # latest 2: both serve, nothing to do
        (view({2: "b", 3: "c"}, v2=(S.SERVING, "b"), v3=(S.SERVING, "c")), None),
    ],
)
def test_next_action(model, expected):
    assert next_action(model) == expected


KNOWN = {
    7: VersionView(S.FAILED, "g"),  # failed with the files offered now
    6: VersionView(S.SERVING, "f"),
    4: VersionView(S.FAILED, "old"),  # failed, but its files changed since
    3: VersionView(S.FAILED, "c", retry=True),  # failed, and an operator asked again
}
OFFERED = {3: "c", 4: "d", 5: "e", 6: "f", 7: "g"}


def test_unusable_versions_are_unchanged_failures_and_rejections():
    assert unusable_versions(OFFERED, KNOWN) == {7}
    assert unusable_versions(OFFERED, KNOWN, rejected={5, 9}) == {5, 7}


@pytest.mark.parametrize(
    ("policy", "kwargs", "expected"),
    [
        # a bad newest version: latest N falls back to the N newest that load
        (VersionPolicy(), {"unusable": {7}}, [6]),
        (VersionPolicy(latest=2), {"unusable": {7}}, [5, 6]),
        (VersionPolicy(), {"unusable": {6, 7}}, [5]),
        (VersionPolicy(all=True), {"unusable": {7}}, [3, 4, 5, 6]),
        (VersionPolicy(specific=(6, 7)), {"unusable": {7}}, [6]),  # no fallback beyond the list
        (VersionPolicy(), {"unusable": set(OFFERED)}, []),
        # an operator's pin or label still names its version
        (VersionPolicy(), {"unusable": {7}, "pinned": 7}, [7]),
        (VersionPolicy(), {"unusable": {7}, "labelled": [7]}, [6, 7]),
    ],
)
def test_select_aspired_falls_back_past_unusable_versions(policy, kwargs, expected):
    assert list(select_aspired(OFFERED, policy, **kwargs)) == expected
