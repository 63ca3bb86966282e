"""A node's report: what it actually serves, written to ``nodes/<node>`` under a lease.

At once after any change of what it serves, and every 5 s for its counters, the node writes,
for each model: the versions it serves with their digests, the default, versions that failed
(with the reason), versions loading, the repository's versions (digests of the newest ten, so
an operator can roll out by number), why the fleet's desired version is not offered
(``notes``), and live counters per version (requests, errors, p99). The key is bound to a
lease (TTL 10 s by default): a node that dies disappears from the fleet on its own. etcd
unreachable: the report waits and is written again, under a new lease, once etcd answers.

    report = node_report(node, zone, address, manager, metrics, source, ready=True)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from baton.control.lifecycle import LOADING_STATES, VersionState
from baton.control.manager import Manager
from baton.fleet.source import FleetSource
from baton.fleet.store import FleetStore, StoreUnavailable
from baton.observe.metrics import Metrics
from baton.rollout.schedule import RolloutStatus

__all__ = ["NodeReporter", "node_report"]

log = logging.getLogger("baton.fleet")


def node_report(
    node: str, zone: str | None, address: str, manager: Manager, metrics: Metrics,
    source: FleetSource, ready: bool,
) -> dict:  # fmt: skip
    stats = metrics.version_stats()
    models = {}
    for name, m in manager.models().items():
        serving = {str(v): r.handle.digest for v, r in m.versions.items()
                   if r.state is VersionState.SERVING and r.handle is not None}  # fmt: skip
        failed = {str(v): r.reason for v, r in m.versions.items()
                  if r.state is VersionState.FAILED}  # fmt: skip
        last = m.last_rollout  # a canary this node ran and rolled back failed here too
        if last is not None and last.status is RolloutStatus.ROLLED_BACK:
            failed.setdefault(str(last.candidate), f"canary rolled back: {last.reason}")
        models[name] = {
            "serving": serving,
            "default": m.default_version(),
            "failed": failed,
            "loading": [v for v, r in m.versions.items() if r.state in LOADING_STATES],
            "available": {str(v): d for v, d in source.available.get(name, {}).items()},
            "note": source.notes.get(name),
            "stats": {v: s for (model, v), s in stats.items() if model == name and v in serving},
        }  # fmt: skip
    return {
        "node": node, "zone": zone, "address": address, "time": time.time(), "ready": ready,
        "store": "reachable" if source.reachable else "unreachable", "models": models,
    }  # fmt: skip


def _state_of(report: dict) -> dict:
    """The report without its clock and counters: what the node serves and why."""
    models = {name: {k: v for k, v in m.items() if k != "stats"}
              for name, m in report["models"].items()}  # fmt: skip
    return {**{k: v for k, v in report.items() if k != "time"}, "models": models}


class NodeReporter:
    def __init__(
        self, store: FleetStore, node: str, zone: str | None, address: str, manager: Manager,
        metrics: Metrics, source: FleetSource, ready, ttl: int = 10, interval: float = 1.0,
    ) -> None:  # fmt: skip
        self.store, self.node, self.zone, self.address = store, node, zone, address
        self.manager, self.metrics, self.source, self.ready = manager, metrics, source, ready
        self.ttl, self.interval = ttl, interval
        self.stats_interval = 5.0  # seconds between writes when only the counters moved
        self._written: tuple[dict, float, object] | None = None  # (state, when, lease)
        self.changed = asyncio.Event()  # set on state changes: report soon
        self._lease = None

    def on_event(self, event) -> None:
        if event.kind in ("state", "swap"):
            self.changed.set()

    async def run(self) -> None:
        """Report until cancelled; then revoke the lease, so the fleet sees this node leave at
        once rather than a TTL later."""
        self._lease = None
        try:
            await self._report_forever()
        finally:
            if self._lease is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.to_thread(self.store.revoke, self._lease), 2.0)

    def _due(self, report: dict) -> bool:
        """Write when what the node serves changed, under a new lease, or when the counters
        are ``stats_interval`` old: not every second (etcd keeps every revision until it
        compacts)."""
        if self._written is None:
            return True
        state, when, lease = self._written
        return (lease is not self._lease or state != _state_of(report)
                or time.monotonic() - when >= self.stats_interval)  # fmt: skip

    async def _report_forever(self) -> None:
        refreshed = 0.0
        backoff = 0.5
        key = self.store.keys.node(self.node)
        while True:
            try:
                if self._lease is None:
                    self._lease = await asyncio.to_thread(self.store.lease, self.ttl)
                    refreshed = time.monotonic()
                elif time.monotonic() - refreshed > self.ttl / 3:
                    alive = await asyncio.to_thread(self.store.refresh, self._lease)
                    refreshed = time.monotonic()
                    if not alive:
                        self._lease = None
                        continue
                self.changed.clear()  # before reading: a change from here on reports again
                report = node_report(self.node, self.zone, self.address, self.manager,
                                     self.metrics, self.source, self.ready())  # fmt: skip
                if self._due(report):
                    await asyncio.to_thread(self.store.put, key, report, self._lease)
                    self._written = (_state_of(report), time.monotonic(), self._lease)
                backoff = 0.5
            except StoreUnavailable as exc:
                (log.warning if backoff == 0.5 else log.debug)(
                    "cannot report to the fleet store (%s); retrying", exc
                )
                self._lease = None  # it may expire meanwhile: a new one when etcd is back
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), self.interval)
