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

Loads run concurrently (up to the server's bound), so what loads under way are expected to take
(``loading``) counts as used: it is not yet visible in the available memory. Pure: where
"available" comes from (psutil, in the server) is the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["MemoryLimits", "MemoryPlan", "estimate_bytes", "plan_memory"]

Decision = Literal["beside", "retire_first", "refuse"]


@dataclass(frozen=True, slots=True)
class MemoryLimits:
    """The server's side of the pre-flight: its budget, the headroom, and where "available"
    memory comes from (``None``: not known, so only the budget is checked)."""

    budget: int | None = None
    headroom: int = 0
    available: Callable[[], int] | None = None


@dataclass(frozen=True, slots=True)
class MemoryPlan:
    decision: Decision
    estimate: int  # bytes the new version is expected to take
    available: int | None  # bytes available to the process now, if known
    in_use: int  # bytes the server's loaded versions (and loads under way) are expected to take
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
    available: int | None,
    in_use: int,
    *,
    budget: int | None = None,
    headroom: int = 0,
    retirable: int = 0,
    loading: int = 0,
    when_short: Literal["refuse", "retire_first"] = "refuse",
) -> MemoryPlan:
    """Load beside, retire first, or refuse. ``in_use``: what loaded versions take;
    ``loading``: what loads under way are expected to take (not yet in ``available``);
    ``retirable``: what this model's loaded versions take, which ``retire_first`` gives back."""
    problems = []
    free = None if available is None else available - loading
    if free is not None and free - estimate < headroom:
        problems.append(
            f"needs ~{_mib(estimate)} with {_mib(free)} available"
            + (f" (after {_mib(loading)} for loads under way)" if loading else "")
            + f" and {_mib(headroom)} to keep free"
        )
    used = in_use + loading
    if budget is not None and used + estimate > budget:
        problems.append(f"needs ~{_mib(estimate)}; {_mib(used)} of the {_mib(budget)} budget used")
    if not problems:
        where = "beside the loaded version" if retirable else "(nothing loaded to replace)"
        return MemoryPlan("beside", estimate, available, used, f"fits {where}")
    reason = "; ".join(problems)
    if when_short == "retire_first" and retirable > 0:
        freed_ok = (free is None or free + retirable - estimate >= headroom) and (
            budget is None or used - retirable + estimate <= budget
        )
        if freed_ok:
            return MemoryPlan("retire_first", estimate, available, used,
                              f"{reason}: retiring the serving version first")  # fmt: skip
        reason += "; retiring the serving version would not free enough"
    return MemoryPlan("refuse", estimate, available, used, reason)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"
