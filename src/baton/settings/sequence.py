"""A stateful model's ``sequence:`` section of model.yaml: its implicit state tensors, how long
an idle sequence lives, how many may live, and what a swap does with them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from baton.settings.base import Duration, Strict
from baton.types import DATATYPES

__all__ = ["SequenceSettings", "StateSettings"]


class StateSettings(Strict):
    """One implicit state tensor of a sequence: fed to ``input`` on each request, taken from
    ``output`` after it. ``shape`` is one sequence's state; a model whose ``input`` has one
    more (batch) dimension gets it with a leading 1. ``initial`` is ``zeros`` or a number."""

    input: str
    output: str
    dtype: str = "FP32"
    shape: tuple[int, ...]
    initial: Literal["zeros"] | float = "zeros"

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, dtype: str) -> str:
        if dtype not in DATATYPES or dtype in ("BYTES", "BF16"):
            raise ValueError(f"state dtype {dtype!r} must be a numeric v2 datatype")
        return dtype

    @field_validator("shape")
    @classmethod
    def _fixed_shape(cls, shape: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < 1 for d in shape):
            raise ValueError(f"state shape {list(shape)} must have fixed positive dimensions")
        return shape


class SequenceSettings(Strict):
    """A stateful model: requests carry ``sequence_id`` / ``sequence_start`` /
    ``sequence_end``; Baton keeps each sequence's ``state`` between its requests.

    At a swap, live sequences either finish on the version that started them (``drain``) or
    are carried to the new version (``migrate``): by name when the state tensors keep their
    names, dtypes and shapes, or through the new version's ``migrate_hook``."""

    state: tuple[StateSettings, ...] = ()
    idle_timeout: Duration = Field(default=60.0, gt=0)
    max_sequences: int = Field(default=10_000, ge=1)
    swap: Literal["drain", "migrate"] = "drain"
    drain_timeout: Duration = Field(default=300.0, ge=0)
    migrate_hook: str | None = Field(
        default=None, description="a .py file in the version defining migrate(state, from, to)"
    )

    @model_validator(mode="after")
    def _distinct_tensors(self) -> SequenceSettings:
        for kind in ("input", "output"):
            names = [getattr(s, kind) for s in self.state]
            if len(set(names)) != len(names):
                raise ValueError(f"sequence state names an {kind} twice: {names}")
        hook = self.migrate_hook
        if hook is not None and (not hook.endswith(".py") or "/" in hook or hook.startswith(".")):
            raise ValueError(f"migrate_hook {hook!r} must be a .py file name in the version")
        return self
