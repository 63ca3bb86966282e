"""Pick the version that answers a request, from one immutable :class:`ModelRoute`.

Pure: no I/O, no clock, no state. The request names a version as a number, a label, or nothing.
Unversioned requests go to the model's default — or, while a canary splits traffic, to the
candidate when the request's split point (:mod:`baton.serving.split`) is below the canary weight.
Explicit versions and labels always go where they ask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from baton.errors import NotFound, Unavailable
from baton.types import is_digits

if TYPE_CHECKING:  # types only: routing itself stays pure
    from baton.serving.handle import VersionHandle
    from baton.serving.serving_map import ModelRoute

__all__ = ["choose_handle"]


def choose_handle(route: ModelRoute, requested: str | None, point: float = 0.0) -> VersionHandle:
    """The handle for ``requested`` (``None``/``""`` = default, digits = version, else a label).

    ``point`` in [0, 1) places an unversioned request in a canary split. Raises
    :class:`NotFound` for a version or label that is not serving and :class:`Unavailable`
    when the model has no serving version at all.
    """
    if not requested:
        canary = route.canary
        if canary is not None:
            chosen = canary.candidate if point < canary.weight else canary.stable
            handle = route.versions.get(chosen)
            if handle is not None:
                return handle
        if route.default is None:
            raise Unavailable(f"model '{route.name}' has no version serving")
        return route.versions[route.default]
    if is_digits(requested):
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
