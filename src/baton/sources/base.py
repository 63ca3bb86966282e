"""The source contract.

A source calls ``publish(source_name, offer)`` each time what it sees changes. The offer is the
*complete* set of models it offers — or :class:`Unknown` when it cannot see its store (a
missing or unreadable directory, an object store or etcd that does not answer). Unknown is not
empty: what the source offered last still stands, and nothing is unloaded because a store went
away. A model left out of an offer is how a source asks for that model's unload; a version left
out is retired once another version of the model serves (a model whose versions are all left
out keeps its last one serving). A source never commands the manager. Which of the offered
versions are served is decided by the model's version policy (and admin pins) in
:func:`baton.control.policy.select_aspired`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from baton.settings import ModelSettings

if TYPE_CHECKING:
    from baton.artifacts.files import VersionFiles

__all__ = ["ModelSpec", "Offer", "Publish", "Source", "Unknown"]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model as a source offers it. ``config_error`` explains a rejected model.yaml; the
    settings are then the last valid ones, or ``None`` for a model never seen with a valid
    model.yaml (configuration fails closed: such a model loads nothing)."""

    name: str
    settings: ModelSettings | None
    versions: Mapping[int, VersionFiles] = field(default_factory=dict)
    config_error: str | None = None


@dataclass(frozen=True, slots=True)
class Unknown:
    """The source cannot see its store now (``reason`` says why); its last offer stands."""

    reason: str


Offer = Mapping[str, ModelSpec] | Unknown
Publish = Callable[[str, Offer], None]


class Source(Protocol):
    name: str

    async def run(self, publish: Publish) -> None:
        """Publish the full set now and after every change, until cancelled."""
        ...

    async def refresh(self) -> None:
        """Look now instead of at the next poll; return once that look has been published."""
        ...
