import pytest

from baton.errors import NotFound, Unavailable
from baton.runtimes.fake import FakeRuntime
from baton.serving.handle import VersionHandle
from baton.serving.routing import choose_handle
from baton.serving.serving_map import Canary, ModelRoute, ServingMap
from baton.serving.split import WeylSequence


def handle(version):
    rt = FakeRuntime(version)
    return VersionHandle("m", version, rt, rt.signature())


H1, H2 = handle(1), handle(2)
ROUTE = ModelRoute("m", {1: H1, 2: H2}, 2, {"stable": 1, "gone": 7})


@pytest.mark.parametrize(
    ("requested", "expected"),
    [(None, H2), ("", H2), ("1", H1), ("2", H2), ("stable", H1)],
)
def test_choose_handle(requested, expected):
    assert choose_handle(ROUTE, requested) is expected


@pytest.mark.parametrize(
    ("route", "requested", "error", "message"),
    [
        (ROUTE, "3", NotFound, "version 3 is not serving"),
        (ROUTE, "canary", NotFound, "no version labelled 'canary'"),
        (ROUTE, "gone", NotFound, "names version 7"),
        (ModelRoute("m", {}, None), None, Unavailable, "no version serving"),
    ],
)
def test_choose_handle_errors(route, requested, error, message):
    with pytest.raises(error, match=message):
        choose_handle(route, requested)


def test_serving_map_is_immutable():
    smap = ServingMap.build([ModelRoute("m", {1: H1}, 1, {"stable": 1})])
    route = smap.get("m")
    with pytest.raises(TypeError):
        route.versions[2] = H2  # type: ignore[index]
    with pytest.raises(TypeError):
        smap.models["x"] = route  # type: ignore[index]
    with pytest.raises(AttributeError):
        route.default = 2  # type: ignore[misc]
    assert smap.get("nope") is None


H3 = handle(3)
SPLIT = ModelRoute("m", {2: H2, 3: H3}, 2, {"stable": 2}, Canary(stable=2, candidate=3, weight=0.2))


@pytest.mark.parametrize(
    ("requested", "point", "expected"),
    [
        (None, 0.0, H3),
        (None, 0.1999, H3),
        (None, 0.2, H2),
        (None, 0.99, H2),
        ("2", 0.0, H2),  # explicit versions go where they ask
        ("3", 0.9, H3),
        ("stable", 0.0, H2),
    ],
)
def test_canary_split(requested, point, expected):
    assert choose_handle(SPLIT, requested, point) is expected


def test_canary_share_is_exact_over_many_requests():
    seq = WeylSequence()
    picks = [choose_handle(SPLIT, None, seq.next()).version for _ in range(1000)]
    assert abs(picks.count(3) - 200) <= 3


def test_canary_whose_version_is_gone_falls_back_to_the_default():
    route = ModelRoute("m", {2: H2}, 2, {}, Canary(stable=2, candidate=3, weight=0.5))
    assert choose_handle(route, None, 0.0) is H2


def test_built_map_keeps_the_canary():
    built = ServingMap.build([SPLIT]).get("m")
    assert built.canary == SPLIT.canary and choose_handle(built, None, 0.1) is H3
