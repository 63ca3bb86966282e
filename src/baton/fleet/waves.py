"""Which nodes take a new version in which wave. Pure.

A wave spec is a list of cumulative sizes, each a node count or a percentage of the fleet:
``1,50%,100%`` is one node, then half the fleet, then all of it. It must grow and end at
``100%`` (or at least as many nodes as the fleet has). Nodes are put in an order that spreads
every wave across zones (one node of each zone before a second of any), so a canary wave never
sits in a single failure domain when it need not.

    order = node_order({"a": "z1", "b": "z1", "c": "z2"})      # ("a", "c", "b")
    sizes = wave_sizes(parse_waves("1,50%,100%"), len(order))  # (1, 2, 3)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["WaveSize", "node_order", "parse_waves", "wave_sizes"]


@dataclass(frozen=True, slots=True)
class WaveSize:
    value: float
    percent: bool

    def nodes(self, fleet: int) -> int:
        if self.percent:
            return min(fleet, max(1, math.ceil(fleet * self.value / 100)))
        return min(fleet, int(self.value))

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.percent else f"{int(self.value)}"


def parse_waves(text: str) -> tuple[WaveSize, ...]:
    """``"1,50%,100%"`` → wave sizes; ``ValueError`` saying what is wrong."""
    sizes = []
    for part in (p.strip() for p in text.split(",")):
        try:
            if part.endswith("%"):
                value = float(part[:-1])
                if not 0 < value <= 100:
                    raise ValueError
                sizes.append(WaveSize(value, True))
            else:
                value = int(part)
                if value < 1:
                    raise ValueError
                sizes.append(WaveSize(value, False))
        except ValueError:
            raise ValueError(
                f"{part!r} is not a wave size: use a node count (1) or a percentage (50%)"
            ) from None
    if not sizes:
        raise ValueError("give at least one wave, e.g. 1,50%,100%")
    if not (sizes[-1].percent and sizes[-1].value == 100):
        raise ValueError("the last wave must be 100% (every node)")
    return tuple(sizes)


def wave_sizes(sizes: Sequence[WaveSize], fleet: int) -> tuple[int, ...]:
    """Cumulative node counts per wave for a fleet of ``fleet`` nodes; waves that add no node
    are dropped (so three waves over two nodes are two)."""
    counts: list[int] = []
    for size in sizes:
        n = max(size.nodes(fleet), counts[-1] if counts else 0)
        if not counts or n > counts[-1]:
            counts.append(n)
    return tuple(counts)


def node_order(zones: Mapping[str, str | None]) -> tuple[str, ...]:
    """Every node (name → zone), ordered so each prefix spreads across zones: round robin over
    the zones (by name), nodes of a zone by name."""
    by_zone: dict[str, list[str]] = {}
    for node, zone in sorted(zones.items()):
        by_zone.setdefault(zone or "", []).append(node)
    order: list[str] = []
    lanes = [by_zone[z] for z in sorted(by_zone)]
    for i in range(max((len(lane) for lane in lanes), default=0)):
        order.extend(lane[i] for lane in lanes if i < len(lane))
    return tuple(order)
