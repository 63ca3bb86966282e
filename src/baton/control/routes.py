"""The one function that turns the manager's records into the serving map.

Only SERVING versions with a handle are routable; a model is listed while something serves or a
source offers it (so an offered model with nothing serving answers 503, not 404); a model with
live-sequence bookkeeping (``sequences``) routes with its index. The manager
calls :func:`serving_map_of` whenever what is routable may have changed and publishes the
result with one assignment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from baton.control.lifecycle import VersionState
from baton.control.records import ModelRecord
from baton.serving.serving_map import ModelRoute, ServingMap

if TYPE_CHECKING:
    from baton.serving.sequences import SequenceIndex

__all__ = ["serving_map_of"]


def serving_map_of(
    models: Iterable[ModelRecord], sequences: Mapping[str, SequenceIndex] | None = None
) -> ServingMap:
    routes = []
    for m in models:
        serving = {
            v: r.handle
            for v, r in m.versions.items()
            if r.state is VersionState.SERVING and r.handle is not None
        }
        if serving or m.offered:
            index = (sequences or {}).get(m.name)
            route = ModelRoute(
                m.name, serving, m.default_version(), m.all_labels(), m.canary(), index
            )
            routes.append(route)
    return ServingMap.build(routes)
