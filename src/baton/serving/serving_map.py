"""The immutable routing snapshot the request path reads.

The manager builds a new :class:`ServingMap` whenever what is routable changes and publishes it
with one attribute assignment. Readers take the current reference once per request and never
see a half-updated map; no lock is involved. Nothing here is mutated after construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from baton.serving.handle import VersionHandle
    from baton.serving.sequences import SequenceIndex

__all__ = ["Canary", "ModelRoute", "ServingMap"]


@dataclass(frozen=True, slots=True)
class Canary:
    """Unversioned traffic split: requests whose point is below ``weight`` go to ``candidate``,
    the rest to ``stable`` (see :mod:`baton.serving.split`). With ``shadow`` > 0 (at a 0 %
    weight) every unversioned request is answered by ``stable`` and that share of them is
    copied to ``candidate``."""

    stable: int
    candidate: int
    weight: float
    shadow: float = 0.0  # share of unversioned traffic copied to the candidate (0 = none)


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """What one model can route to right now.

    ``versions`` holds only SERVING versions; ``default`` is the version an unversioned request
    gets (``None`` when nothing serves) unless a ``canary`` splits unversioned traffic;
    ``labels`` map names such as ``stable`` to versions.
    """

    name: str
    versions: Mapping[int, VersionHandle]
    default: int | None
    labels: Mapping[str, int] = field(default_factory=dict)
    canary: Canary | None = None
    sequences: SequenceIndex | None = None


@dataclass(frozen=True, slots=True)
class ServingMap:
    models: Mapping[str, ModelRoute]

    @staticmethod
    def empty() -> ServingMap:
        return ServingMap(MappingProxyType({}))

    @staticmethod
    def build(routes: list[ModelRoute]) -> ServingMap:
        frozen = [
            ModelRoute(
                r.name,
                MappingProxyType(dict(r.versions)),
                r.default,
                MappingProxyType(dict(r.labels)),
                r.canary,
                r.sequences,
            )
            for r in routes
        ]
        return ServingMap(MappingProxyType({r.name: r for r in frozen}))

    def get(self, model: str) -> ModelRoute | None:
        return self.models.get(model)
