"""What the supervisor tells its workers about routing: one numbered generation of the map.

The manager's :class:`~baton.serving.serving_map.ServingMap` holds the supervisor's handles;
a :class:`Generation` says the same thing by name — per model, which loaded copy (``token``)
serves each version, the default, labels and canary — plus what a worker needs to answer
metadata and readiness questions without asking. Each worker builds its own map from it over
its own handles (:func:`baton.workers.replica.Replica.apply`). Values only, so it pickles.

    generation = generation_of(7, manager.serving_map, manager.models(), index_rows)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from baton.control.records import ModelRecord
from baton.serving.serving_map import Canary, ServingMap

__all__ = ["Generation", "RouteSpec", "generation_of"]


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One model's route: ``versions`` maps each serving version to the token of its loaded
    copy; ``windowed`` are the versions whose live statistics a rollout is collecting."""

    name: str
    versions: Mapping[int, int]
    default: int | None
    labels: Mapping[str, int]
    canary: Canary | None
    windowed: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Generation:
    """Generation ``number`` of the node's serving map. ``states`` (model → version →
    (state, reason)) and ``index`` (the repository index rows) are for questions a worker
    answers on its own (why a model is not ready, gRPC ``RepositoryIndex``)."""

    number: int
    routes: tuple[RouteSpec, ...]
    states: Mapping[str, Mapping[int, tuple[str, str | None]]] = field(default_factory=dict)
    index: tuple[tuple[str, str, str, str], ...] = ()


def generation_of(
    number: int,
    serving_map: ServingMap,
    models: Mapping[str, ModelRecord],
    index: tuple[tuple[str, str, str, str], ...] = (),
) -> Generation:
    """The generation that routes as ``serving_map`` does. Every handle in it must wrap a
    pooled runtime (one with a ``token``)."""
    routes = []
    for route in serving_map.models.values():
        versions = {v: h.runtime.token for v, h in route.versions.items()}  # type: ignore[attr-defined]
        windowed = frozenset(v for v, h in route.versions.items() if h.window is not None)
        routes.append(RouteSpec(route.name, versions, route.default, dict(route.labels),
                                route.canary, windowed))  # fmt: skip
    states = {
        name: {v: (r.state.value, r.reason) for v, r in m.versions.items() if r.state is not None}
        for name, m in models.items()
    }
    return Generation(number, tuple(routes), states, index)
