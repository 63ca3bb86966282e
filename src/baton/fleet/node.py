"""What makes a server a fleet node: its fleet source, its reporter and its coordinator.

    node = FleetNode(settings, repository_source, manager, metrics, dataplane)
    tasks = node.start(loop)     # report, campaign (and coordinate when elected)

The node's readiness also requires it to serve every model the fleet manages (some version of
each: the target, or the stable version while a rollout is under way — a node that cannot load
a target but keeps serving the stable version is reported diverged, not unready, so a bad
target never takes the fleet out of the load balancer). The coordinator's node exports the
fleet's verdict as metrics.
"""

from __future__ import annotations

import asyncio
import socket

from baton.api.dataplane import DataPlane
from baton.control.lifecycle import VersionState
from baton.control.manager import Manager
from baton.fleet.coordinator import Coordinator
from baton.fleet.keys import check_name
from baton.fleet.reporter import NodeReporter
from baton.fleet.rollout import desired
from baton.fleet.source import FleetSource
from baton.fleet.store import FleetStore
from baton.fleet.verdict import Verdict
from baton.observe.metrics import Metrics
from baton.settings import ServerSettings
from baton.sources.base import Source

__all__ = ["FleetNode"]


class FleetNode:
    def __init__(
        self, settings: ServerSettings, repository: Source, manager: Manager, metrics: Metrics,
        dataplane: DataPlane,
    ) -> None:  # fmt: skip
        self.name = check_name("node", settings.node_name or socket.gethostname())
        self.store = FleetStore.connect(settings.fleet or "", settings.fleet_name)
        self.source = FleetSource(self.store, self.name, repository)
        self.manager, self.metrics = manager, metrics
        scheme = "https" if settings.tls_cert else "http"
        address = settings.advertise_url or f"{scheme}://{settings.host}:{settings.http_port}"
        self.reporter = NodeReporter(
            self.store, self.name, settings.zone, address, manager, metrics, self.source,
            dataplane.ready, ttl=settings.lease_ttl,
        )  # fmt: skip
        self.coordinator = Coordinator(self.store, self.name, settings.lease_ttl,
                                       on_verdict=self._export)  # fmt: skip
        manager.events.subscribe(self.reporter.on_event)
        dataplane.ready_checks.append(self.serves_every_managed_model)

    def start(self, loop: asyncio.AbstractEventLoop) -> list[asyncio.Task]:
        return [
            loop.create_task(self.reporter.run(), name="fleet reporter"),
            loop.create_task(self.coordinator.run(), name="fleet coordinator"),
        ]

    def serves_every_managed_model(self) -> bool:
        """Every model the fleet manages is served here — except one this node cannot have (its
        repository lacks the version or holds other bytes, or the version failed here): that
        node is diverged, not unready, so a bad target never empties the load balancer."""
        view = self.source.view
        managed = set(view.targets) | {m for m, r in view.rollouts.items() if not r.finished}
        models = self.manager.models()
        for name in managed:
            if name in self.source.notes:
                continue
            model = models.get(name)
            if model is None:
                return False  # not offered yet
            if model.serving():
                continue
            want = desired(self.name, view.targets.get(name), view.rollouts.get(name))
            record = model.versions.get(want.version) if want is not None else None
            if record is None or record.state is not VersionState.FAILED:
                return False  # still loading
        return True

    def _export(self, verdict: Verdict) -> None:
        """The coordinator's view of the fleet, as metrics (scrape the coordinator's node)."""
        self.metrics.fleet_converged.set(1 if verdict.status == "converged" else 0)
        self.metrics.fleet_node_version.clear()
        for cell in verdict.cells:
            if cell.serves is not None:
                self.metrics.fleet_node_version.labels(cell.node, cell.model).set(cell.serves)
