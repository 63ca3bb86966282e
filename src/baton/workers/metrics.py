"""One node's metrics from several processes: Prometheus text from each, added up.

Every worker keeps its own registry (requests, latency histograms, in flight, its process's
memory and CPU); the supervisor keeps the control plane's (swaps, loads, rollouts). The node's
``/metrics`` is their sum, sample by sample (same name, same labels): counters, histogram
buckets and in-flight gauges add up, so does resident memory (each process's, shared pages
counted in each). Samples where a sum means nothing take the extreme that does:
``*_created`` and ``process_start_time_seconds`` the earliest, ``process_max_fds`` the
largest.

    text = merge_metrics([supervisor_text, worker_1_text, worker_2_text])
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["merge_metrics"]

_EARLIEST = ("_created", "process_start_time_seconds")
_LARGEST = ("process_max_fds",)


def _combine(name: str, old: float, new: float) -> float:
    if name.endswith(_EARLIEST):
        return min(old, new)
    if name.endswith(_LARGEST):
        return max(old, new)
    return old + new


class _Sum:
    """A collector that yields the merged families (rendered by prometheus_client itself)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def merge_metrics(texts: list[bytes]) -> bytes:
    """The sum of several Prometheus text expositions, as one."""
    merged: dict[str, tuple[Metric, dict]] = {}  # family name → (family, samples by key)
    for text in texts:
        for family in text_string_to_metric_families(text.decode("utf-8")):
            if family.name not in merged:
                merged[family.name] = (Metric(family.name, family.documentation, family.type), {})
            samples = merged[family.name][1]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                old = samples.get(key)
                value = sample.value
                samples[key] = value if old is None else _combine(sample.name, old, value)
    families = []
    for family, samples in merged.values():
        for (name, labels), value in samples.items():
            family.add_sample(name, dict(labels), value)
        families.append(family)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Sum(families))  # type: ignore[arg-type]
    return generate_latest(registry)
