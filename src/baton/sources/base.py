"""The source contract.

A source calls ``publish(source_name, specs)`` with the *complete* set of models it offers each
time something changes. A model left out is how it asks for that model's unload; a version left
out is retired once another version of the model serves (a model whose versions are all left
out keeps its last one serving). It never commands the manager. Which of the offered versions
are served is decided by the model's version policy (and admin pins) in
:func:`baton.control.policy.select_aspired`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from baton.settings import ModelSettings

if TYPE_CHECKING:
    from baton.artifacts.files import VersionFiles

__all__ = ["ModelSpec", "Publish", "Source"]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model as a source offers it. ``config_error`` explains a rejected model.yaml (the
    settings are then the last valid ones, or defaults for a model never seen valid)."""

    name: str
    settings: ModelSettings
    versions: Mapping[int, VersionFiles] = field(default_factory=dict)
    config_error: str | None = None


Publish = Callable[[str, Mapping[str, ModelSpec]], None]


class Source(Protocol):
    name: str

    async def run(self, publish: Publish) -> None:
        """Publish the full set now and after every change, until cancelled."""
        ...

    async def refresh(self) -> None:
        """Look now instead of at the next poll; return once that look has been published."""
        ...
