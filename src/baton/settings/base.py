"""What every settings class is made of: strict frozen models, and durations written as the
command line writes them (``250ms``, ``30s``, ``2m``, ``1h``)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

__all__ = ["Duration", "Strict", "parse_duration"]


_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``30``, ``250ms``, ``30s``, ``2m`` or ``1h``;
    raises ``ValueError`` saying what is accepted."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"{value!r} is not a duration: use seconds (30) or a number with a unit "
            "(250ms, 30s, 2m, 1h)"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


#: Seconds, written as a number or with a unit (see :func:`parse_duration`).
Duration = Annotated[float, BeforeValidator(parse_duration)]


class Strict(BaseModel):
    """Unknown keys are errors, and settings never change once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)
