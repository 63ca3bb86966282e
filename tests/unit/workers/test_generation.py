"""A generation says by name what the supervisor's serving map says by handle, and a worker's
replica routes exactly as it says over its own handles."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.artifacts.files import VersionFiles
from baton.control.lifecycle import VersionState
from baton.control.records import ModelRecord, VersionRecord
from baton.errors import NotFound
from baton.rollout.window import VersionWindow
from baton.runtimes.fake import FakeRuntime
from baton.serving.handle import VersionHandle
from baton.serving.serving_map import Canary, ModelRoute, ServingMap
from baton.workers.generation import generation_of
from baton.workers.replica import Replica


class Stand(FakeRuntime):
    """A runtime with a token, as a pooled runtime has."""

    def __init__(self, token: int) -> None:
        super().__init__()
        self.token = token


def handle(model: str, version: int, token: int) -> VersionHandle:
    runtime = Stand(token)
    return VersionHandle(model, version, runtime, runtime.signature())


def record(name: str, states: dict[int, VersionState]) -> ModelRecord:
    m = ModelRecord(name)
    for v, state in states.items():
        m.versions[v] = VersionRecord(v, VersionFiles(Path(f"/r/{name}/{v}"), "f"), state=state)
    return m


def test_generation_names_copies_by_token_and_keeps_routing_facts():
    h1, h2 = handle("m", 1, 11), handle("m", 2, 12)
    h2.window = VersionWindow()
    canary = Canary(stable=1, candidate=2, weight=0.1)
    smap = ServingMap.build([ModelRoute("m", {1: h1, 2: h2}, 1, {"stable": 1}, canary)])
    models = {"m": record("m", {1: VersionState.SERVING, 2: VersionState.SERVING,
                                3: VersionState.FAILED})}  # fmt: skip
    models["m"].versions[3].reason = "load_error"
    rows = (("m", "1", "SERVING", ""),)
    g = generation_of(7, smap, models, rows)
    assert g.number == 7 and g.index == rows
    (spec,) = g.routes
    assert dict(spec.versions) == {1: 11, 2: 12}
    assert spec.default == 1 and dict(spec.labels) == {"stable": 1} and spec.canary == canary
    assert spec.windowed == frozenset({2})
    assert g.states["m"][3] == ("FAILED", "load_error")


def test_replica_routes_as_the_generation_says_over_its_own_handles():
    sup1, sup2 = handle("m", 1, 21), handle("m", 2, 22)
    smap = ServingMap.build([ModelRoute("m", {1: sup1, 2: sup2}, 2, {})])
    g = generation_of(3, smap, {"m": record("m", {1: VersionState.SERVING,
                                                  2: VersionState.SERVING})})  # fmt: skip
    mine = {21: handle("m", 1, 21)}  # this worker lacks copy 22: left out of its route
    replica = Replica()
    replica.apply(g, lambda token, model, version: mine.get(token))
    route = replica.serving_map.get("m")
    assert route is not None and dict(route.versions) == {1: mine[21]} and route.default == 2
    assert replica.generation is g and not replica.synced  # until the supervisor says so
    replica.node_ready = True
    assert replica.synced
    assert replica.model("m").versions[1].state is VersionState.SERVING
    with pytest.raises(NotFound):
        replica.model("nope")


def test_an_empty_generation_routes_nothing():
    replica = Replica()
    replica.apply(generation_of(1, ServingMap.empty(), {}), lambda *a: None)
    assert replica.serving_map.get("m") is None and replica.models() == {} and not replica.synced
