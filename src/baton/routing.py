"""Pick the version that answers a request, from one immutable :class:`ModelRoute`.

Pure: no I/O, no clock, no state. The request names a version as a number, a label, or nothing
(the model's default). Canary weights and sticky session keys plug in here.
"""

from __future__ import annotations

from baton.errors import NotFound, Unavailable
from baton.handle import VersionHandle
from baton.serving_map import ModelRoute

__all__ = ["choose_handle"]


def choose_handle(route: ModelRoute, requested: str | None) -> VersionHandle:
    """The handle for ``requested`` (``None``/``""`` = default, digits = version, else a label).

    Raises :class:`NotFound` for a version or label that is not serving and
    :class:`Unavailable` when the model has no serving version at all.
    """
    if not requested:
        if route.default is None:
            raise Unavailable(f"model '{route.name}' has no version serving")
        return route.versions[route.default]
    if requested.isdigit():
        handle = route.versions.get(int(requested))
        if handle is None:
            raise NotFound(f"model '{route.name}' version {requested} is not serving")
        return handle
    version = route.labels.get(requested)
    if version is None:
        raise NotFound(f"model '{route.name}' has no version labelled '{requested}'")
    handle = route.versions.get(version)
    if handle is None:
        raise NotFound(
            f"model '{route.name}' label '{requested}' names version {version}, "
            "which is not serving"
        )
    return handle
