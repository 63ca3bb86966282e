"""Prometheus metrics. State metrics come from the event bus; request metrics from the data plane.

Each server owns its own registry (so several servers can live in one process, as in tests).
Per-request metric children are cached per (model, version) so the request path does one dict
lookup, one counter increment and one histogram observation.

Label cardinality stays bounded however many versions a model goes through: the series of a
version are removed once it is one of more than ``RETAINED_UNLOADED`` unloaded versions of
its model (recently retired versions stay visible for dashboards and alerts).
"""

from __future__ import annotations

import contextlib
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

from baton.observe.events import Event

__all__ = ["Metrics", "quantile"]

_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
)
_PHASE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
RETAINED_UNLOADED = 5


def quantile(q: float, cumulative: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile from cumulative (upper bound, count) buckets, linear within one."""
    total = cumulative[-1][1] if cumulative else 0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in cumulative:
        if count >= rank:
            if upper == float("inf"):
                return lower
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (upper - lower) * share
        lower, below = upper, count
    return lower


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)  # process_resident_memory_bytes and friends
        self.requests = Counter(
            "baton_requests",
            "Inference requests answered",
            ["model", "version", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "baton_request_duration_seconds",
            "Inference latency inside Baton",
            ["model", "version"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.inflight = Gauge(
            "baton_inflight_requests",
            "Requests in flight per version",
            ["model", "version"],
            registry=r,
        )
        self.rejected = Counter(
            "baton_rejected_requests",
            "Requests refused before reaching a version (4xx/5xx)",
            ["model", "status"],
            registry=r,
        )
        self.state = Gauge(
            "baton_version_state",
            "1 for the state each version is in",
            ["model", "version", "state"],
            registry=r,
        )
        self.swaps = Counter(
            "baton_swaps", "Changes of a model's default version", ["model"], registry=r
        )
        self.load_seconds = Histogram(
            "baton_load_duration_seconds",
            "Model load time",
            ["model"],
            buckets=_PHASE_BUCKETS,
            registry=r,
        )
        self.warmup_seconds = Histogram(
            "baton_warmup_duration_seconds",
            "Warm-up time",
            ["model"],
            buckets=_PHASE_BUCKETS,
            registry=r,
        )
        self.drain_seconds = Histogram(
            "baton_drain_duration_seconds",
            "Time from retirement to zero in-flight requests",
            ["model"],
            buckets=_PHASE_BUCKETS,
            registry=r,
        )
        self.failed_loads = Counter(
            "baton_failed_loads", "Versions that ended FAILED", ["model", "reason"], registry=r
        )
        self.forced_unloads = Counter(
            "baton_forced_unloads",
            "Unloads after the drain timeout with requests in flight",
            ["model"],
            registry=r,
        )
        self.batch_size = Histogram(
            "baton_batch_size",
            "Rows per backend call when batching",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.rollout_weight = Gauge(
            "baton_rollout_weight",
            "Share of unversioned traffic per version during a rollout",
            ["model", "version"],
            registry=r,
        )
        self.rollbacks = Counter(
            "baton_rollbacks",
            "Rollbacks: rollouts rolled back by a gate or aborted, and operator rollbacks",
            ["model", "reason"],
            registry=r,
        )
        self.update_decisions = Counter(
            "baton_update_decisions",
            "Update rate limiter decisions on newly published versions",
            ["model", "decision"],
            registry=r,
        )
        self.config_error = Gauge(
            "baton_model_config_error",
            "1 while a model's model.yaml is invalid (its last valid settings, if any, hold)",
            ["model"],
            registry=r,
        )
        self.source_up = Gauge(
            "baton_source_up",
            "0 while a source cannot see its store (its last offer stands)",
            ["source"],
            registry=r,
        )
        self.audit_errors = Counter(
            "baton_audit_write_errors",
            "Events the audit log could not write (disk full, I/O error)",
            registry=r,
        )
        self.fleet_converged = Gauge(
            "baton_fleet_converged",
            "1 when every live node serves what the fleet wants (exported by the coordinator)",
            registry=r,
        )
        self.fleet_node_version = Gauge(
            "baton_fleet_node_version",
            "The version each live node serves as default, per model (by the coordinator)",
            ["node", "model"],
            registry=r,
        )
        self.live_sequences = Gauge(
            "baton_live_sequences",
            "Live sequences of stateful models, per version they are bound to",
            ["model", "version"],
            registry=r,
        )
        self.sequence_bytes = Gauge(
            "baton_sequence_state_bytes",
            "Memory held by live sequences' state, per version",
            ["model", "version"],
            registry=r,
        )
        self.sequences_ended = Counter(
            "baton_sequences_ended_by_server",
            "Sequences the server ended: idle_timeout, or cut at a sequence drain timeout",
            ["model", "reason"],
            registry=r,
        )
        self._sequence_series: set[tuple[str, str]] = set()
        self._children: dict[tuple[str, int], tuple] = {}
        self._states: dict[tuple[str, str], set[str]] = {}  # states each version has been in
        self._unloaded: dict[str, deque[int]] = {}

    # ---- request path -------------------------------------------------------------------
    def request_children(self, model: str, version: int) -> tuple:
        """(ok counter, error counter, latency histogram, in-flight gauge) for one version."""
        key = (model, version)
        children = self._children.get(key)
        if children is None:
            v = str(version)
            children = self._children[key] = (
                self.requests.labels(model, v, "ok"),
                self.requests.labels(model, v, "error"),
                self.latency.labels(model, v),
                self.inflight.labels(model, v),
            )
        return children

    def observe_sequences(self, live: dict[tuple[str, int], tuple[int, int]]) -> None:
        """Set the live-sequence gauges: (model, version) -> (sequences, bytes); versions
        absent from ``live`` hold none."""
        series = {(model, str(version)) for model, version in live}
        for key in self._sequence_series - series:
            self._remove(self.live_sequences, *key)
            self._remove(self.sequence_bytes, *key)
        self._sequence_series = series
        for (model, version), (count, size) in live.items():
            self.live_sequences.labels(model, str(version)).set(count)
            self.sequence_bytes.labels(model, str(version)).set(size)

    def observe_batch(self, model: str, version: int, rows: int) -> None:
        self.batch_size.labels(model).observe(rows)

    # ---- event subscriber ---------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        model, data = event.model, event.data
        if event.kind == "swap":
            self.swaps.labels(model).inc()
        if event.kind == "rollout":
            self._on_rollout(model, event)
        if event.kind == "rate_limit":
            self.update_decisions.labels(model, event.state).inc()
        if event.kind == "rollback":  # an operator's `baton rollback`
            self.rollbacks.labels(model, event.reason or "operator").inc()
        if event.kind == "config_error":
            self.config_error.labels(model).set(0 if event.state == "cleared" else 1)
        if event.kind == "sequences":
            if data.get("expired"):
                self.sequences_ended.labels(model, "idle_timeout").inc(data["expired"])
            if data.get("cut"):
                self.sequences_ended.labels(model, "sequence_drain_timeout").inc(data["cut"])
        if event.kind == "source":
            self.source_up.labels(data["source"]).set(1 if event.state == "available" else 0)
        if event.kind != "state" or event.version is None:
            return
        v = str(event.version)
        seen = self._states.setdefault((model, v), set())
        seen.add(event.state)
        for state in seen:
            self.state.labels(model, v, state).set(1 if state == event.state else 0)
        if "load_seconds" in data:
            self.load_seconds.labels(model).observe(data["load_seconds"])
        if "warmup_seconds" in data:
            self.warmup_seconds.labels(model).observe(data["warmup_seconds"])
        if event.state == "FAILED":
            self.failed_loads.labels(model, event.reason or "unknown").inc()
        if event.state == "UNLOADED":
            self.drain_seconds.labels(model).observe(data.get("drain_seconds", 0.0))
            if data.get("forced"):
                self.forced_unloads.labels(model).inc()
            self._children.pop((model, event.version), None)
            self._retire_series(model, event.version)

    def _on_rollout(self, model: str, event: Event) -> None:
        data = event.data
        weight = data["weight"]
        self.rollout_weight.labels(model, str(data["candidate"])).set(weight)
        self.rollout_weight.labels(model, str(data["stable"])).set(1.0 - weight)
        if event.state in ("ROLLED_BACK", "ABORTED"):
            failed = data.get("failed_gates") or []
            reason = failed[0] if failed else ("operator" if event.state == "ABORTED" else "gate")
            self.rollbacks.labels(model, reason).inc()

    def _retire_series(self, model: str, version: int) -> None:
        retired = self._unloaded.setdefault(model, deque())
        if version in retired:
            retired.remove(version)
        retired.append(version)
        while len(retired) > RETAINED_UNLOADED:
            self._forget(model, str(retired.popleft()))

    def _forget(self, model: str, version: str) -> None:
        for state in self._states.pop((model, version), ()):
            self._remove(self.state, model, version, state)
        for outcome in ("ok", "error"):
            self._remove(self.requests, model, version, outcome)
        self._remove(self.latency, model, version)
        self._remove(self.inflight, model, version)

    @staticmethod
    def _remove(metric, *labels: str) -> None:
        with contextlib.suppress(KeyError):  # a series that was never recorded
            metric.remove(*labels)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def version_stats(self) -> dict[tuple[str, str], dict]:
        """Per (model, version): requests answered, errors, and the p99 latency in seconds
        (interpolated within the histogram's buckets, as Prometheus' histogram_quantile does;
        ``None`` without requests). Cumulative since the version was loaded."""
        stats: dict[tuple[str, str], dict] = {}
        for family in self.requests.collect():
            for s in family.samples:
                if s.name.endswith("_total"):
                    entry = stats.setdefault((s.labels["model"], s.labels["version"]),
                                             {"requests": 0, "errors": 0, "p99": None})  # fmt: skip
                    entry["requests"] += int(s.value)
                    if s.labels["outcome"] == "error":
                        entry["errors"] += int(s.value)
        buckets: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for family in self.latency.collect():
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    key = (s.labels["model"], s.labels["version"])
                    buckets.setdefault(key, []).append((float(s.labels["le"]), s.value))
        for key, cumulative in buckets.items():
            if key in stats:
                stats[key]["p99"] = quantile(0.99, sorted(cumulative))
        return stats
