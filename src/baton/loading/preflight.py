"""Memory pre-flight: may a new version be loaded beside the one it replaces?

Pure decisions, table-tested. The estimate of what a version will take is the footprint
measured when the model's previous version loaded, scaled by the ratio of file sizes; without
one, the files' size times ``file_factor`` (ONNX Runtime peaks at about twice the model's size
while it builds a session). The version fits if, after it, ``headroom`` bytes of memory stay
available and the server's models stay within ``budget`` (if one is set). Then it loads beside
the serving version (availability-preserving). If not, the model's ``memory.when_short``
decides: ``refuse`` (the version is FAILED with reason ``insufficient_memory``; the old one
keeps serving) or ``retire_first`` (resource-preserving: the old versions are drained and
unloaded first, so the model is unavailable while the new one loads). A model with nothing
loaded has nothing to retire, so it is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import psutil

from baton.control.lifecycle import VersionState
from baton.control.records import ModelRecord, VersionRecord

__all__ = [
    "MemoryLimits",
    "MemoryPlan",
    "estimate_bytes",
    "plan_load",
    "plan_memory",
]

Decision = Literal["beside", "retire_first", "refuse"]


def _available() -> int:
    return psutil.virtual_memory().available


@dataclass(frozen=True, slots=True)
class MemoryLimits:
    """The server's side of the pre-flight: its budget, the headroom, and where "available"
    comes from (replaceable in tests)."""

    budget: int | None = None
    headroom: int = 0
    available: Callable[[], int] = field(default=_available)


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    decision: Decision
    estimate: int  # bytes the new version is expected to take
    available: int  # bytes available to the process now
    in_use: int  # bytes the server's loaded versions are known to take
    reason: str


def estimate_bytes(
    files_bytes: int, previous: tuple[int, int] | None = None, file_factor: float = 2.0
) -> int:
    """Expected footprint of a version of ``files_bytes``; ``previous`` is (footprint, files
    bytes) of the model's last measured version."""
    if previous is not None and previous[0] > 0 and previous[1] > 0:
        return int(previous[0] * files_bytes / previous[1])
    return int(files_bytes * file_factor)


def plan_memory(
    estimate: int,
    available: int,
    in_use: int,
    *,
    budget: int | None = None,
    headroom: int = 0,
    retirable: int = 0,
    when_short: Literal["refuse", "retire_first"] = "refuse",
) -> MemoryPlan:
    """Load beside, retire first, or refuse. ``retirable``: what the model's loaded versions
    take, which ``retire_first`` would give back."""
    problems = []
    if available - estimate < headroom:
        problems.append(
            f"needs ~{_mib(estimate)} with {_mib(available)} available "
            f"and {_mib(headroom)} to keep free"
        )
    if budget is not None and in_use + estimate > budget:
        problems.append(
            f"needs ~{_mib(estimate)}; {_mib(in_use)} of the {_mib(budget)} budget used"
        )
    if not problems:
        return MemoryPlan("beside", estimate, available, in_use, "fits beside the serving version")
    reason = "; ".join(problems)
    if when_short == "retire_first" and retirable > 0:
        freed_ok = available + retirable - estimate >= headroom and (
            budget is None or in_use - retirable + estimate <= budget
        )
        if freed_ok:
            return MemoryPlan("retire_first", estimate, available, in_use,
                              f"{reason}: retiring the serving version first")  # fmt: skip
        reason += "; retiring the serving version would not free enough"
    return MemoryPlan("refuse", estimate, available, in_use, reason)


_LOADED = (VersionState.READY, VersionState.SERVING, VersionState.DRAINING)


def plan_load(
    models: Iterable[ModelRecord], m: ModelRecord, r: VersionRecord, limits: MemoryLimits
) -> MemoryPlan:
    """:func:`plan_memory` for loading version ``r`` of ``m``, from what the server's loaded
    versions were measured to take (versions never measured count as nothing)."""
    loaded = [(rec.name, x) for rec in models for x in rec.versions.values()
              if x.state in _LOADED and x.memory]  # fmt: skip
    measured = [x for x in m.versions.values() if x.memory and x.files_bytes]
    previous = max(measured, key=lambda x: x.version, default=None)
    estimate = estimate_bytes(
        r.files_bytes,
        (previous.memory, previous.files_bytes) if previous else None,
        m.settings.memory.file_factor,
    )
    retirable = [x.memory for name, x in loaded
                 if name == m.name and x.state is not VersionState.DRAINING]  # fmt: skip
    return plan_memory(
        estimate, limits.available(), sum(x.memory for _, x in loaded),
        budget=limits.budget, headroom=limits.headroom, retirable=sum(retirable),
        when_short=m.settings.memory.when_short,
    )  # fmt: skip


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"
