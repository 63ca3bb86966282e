"""A worker's view of the node: the part of the manager the data plane and API read.

The supervisor's manager decides; a worker only mirrors, generation by generation
(:class:`baton.workers.generation.Generation`), over handles of its own loaded copies::

    replica = Replica()
    replica.apply(generation, handle_for)   # handle_for(token, model, version) → VersionHandle
    dataplane = DataPlane(replica, metrics)  # reads replica.serving_map per request

The new map is published with one assignment, as the manager does; a version whose copy this
worker does not hold is left out of its route (it cannot happen while the supervisor's
protocol holds: copies are loaded everywhere before a generation names them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from baton.control.lifecycle import VersionState
from baton.errors import NotFound
from baton.serving.handle import VersionHandle
from baton.serving.serving_map import ModelRoute, ServingMap
from baton.workers.generation import Generation

__all__ = ["Replica", "ReplicaModel", "ReplicaVersion"]


@dataclass(frozen=True, slots=True)
class ReplicaVersion:
    state: VersionState
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ReplicaModel:
    versions: dict[int, ReplicaVersion] = field(default_factory=dict)


class Replica:
    def __init__(self) -> None:
        self.serving_map: ServingMap = ServingMap.empty()
        self.generation: Generation | None = None
        self.node_ready = False  # as the supervisor last said: every worker serving, synced
        #: live sequences by model, as the data plane looks them up: none, since stateful
        #: models are served by one process only (their versions fail to load with workers)
        self.sequences: dict = {}
        self._models: dict[str, ReplicaModel] = {}

    @property
    def synced(self) -> bool:
        """What the data plane's readiness asks of a manager: here, the whole node's."""
        return self.node_ready

    def models(self) -> dict[str, ReplicaModel]:
        return self._models

    def model(self, name: str) -> ReplicaModel:
        record = self._models.get(name)
        if record is None:
            raise NotFound(f"unknown model '{name}'")
        return record

    def apply(
        self,
        generation: Generation,
        handle_for: Callable[[int, str, int], VersionHandle | None],
    ) -> None:
        """Route as ``generation`` says, over the handles ``handle_for`` gives."""
        routes = []
        for spec in generation.routes:
            versions = {}
            for version, token in spec.versions.items():
                handle = handle_for(token, spec.name, version)
                if handle is not None:
                    versions[version] = handle
            routes.append(ModelRoute(spec.name, versions, spec.default, spec.labels, spec.canary))
        self._models = {
            name: ReplicaModel({v: ReplicaVersion(VersionState(s), r) for v, (s, r) in vs.items()})
            for name, vs in generation.states.items()
        }
        self.generation = generation
        self.serving_map = ServingMap.build(routes)
