"""The fleet's one coordinator: elected through etcd, it moves rollouts from wave to wave.

Every node runs a :class:`Coordinator`; the one holding the election key (bound to its lease)
leads. The leader reads the live nodes' reports and the rollout records whenever either
changes (etcd watches) and at least every second (a wave's interval is a clock), asks
:func:`baton.fleet.rollout.step` what each running rollout does next, and writes the result
with compare-and-set; a promotion sets the model's target in the same transaction. Every
change is a fleet audit entry. If the leader dies, its lease expires within the TTL and another
node takes over, resuming from the recorded wave. If etcd cannot be reached, nothing moves.

    coordinator = Coordinator(store, node="n1", on_verdict=metrics_update)
    task = asyncio.create_task(coordinator.run())
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from baton.fleet.rollout import (
    PROMOTED,
    FleetRollout,
    NodeModel,
    Target,
    VersionStats,
    from_json,
    step,
    to_json,
)
from baton.fleet.store import FleetStore, StoreUnavailable
from baton.fleet.verdict import Verdict, fleet_verdict
from baton.fleet.watch import PrefixWatch

__all__ = ["Coordinator", "node_models", "target_doc", "write_audit"]

log = logging.getLogger("baton.fleet")


def node_models(report: dict) -> dict[str, NodeModel]:
    """A node report's models, as :func:`step` reads them."""
    out = {}
    for name, m in report.get("models", {}).items():
        stats = {
            int(v): VersionStats(int(s.get("requests", 0)), int(s.get("errors", 0)), s.get("p99"))
            for v, s in m.get("stats", {}).items()
        }
        out[name] = NodeModel(
            {int(v): d for v, d in m.get("serving", {}).items()},
            {int(v): r for v, r in m.get("failed", {}).items()},
            stats,
        )
    return out


def target_doc(target: Target, set_by: str) -> dict:
    """The JSON of a model's target key."""
    return {"version": target.version, "digest": target.digest, "set_by": set_by}


def write_audit(store: FleetStore, kind: str, model: str, message: str, **data) -> None:
    """A fleet audit entry (``audit/<time>-<id>``); blocking."""
    stamp = f"{time.time():017.6f}-{uuid.uuid4().hex[:6]}"
    store.put(store.keys.audit(stamp), {"time": time.time(), "kind": kind, "model": model,
                                        "message": message, "data": data})  # fmt: skip


class Coordinator:
    def __init__(
        self, store: FleetStore, node: str, ttl: int = 10,
        on_verdict: Callable[[Verdict], None] | None = None,
    ) -> None:  # fmt: skip
        self.store, self.node, self.ttl = store, node, ttl
        self.on_verdict = on_verdict
        self.leading = False

    async def run(self) -> None:
        """Campaign, lead while elected, campaign again when the lead is lost."""
        changed = asyncio.Event()
        loop = asyncio.get_running_loop()
        keys = self.store.keys
        watches = [PrefixWatch(self.store, prefix, changed)
                   for prefix in (keys.nodes, keys.rollouts, keys.election)]  # fmt: skip
        for watch in watches:
            watch.start(loop)
        try:
            while True:
                lease = await self._campaign()
                if lease is None:
                    changed.clear()  # wait for the election key to change (or a while)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), self.ttl / 2)
                    continue
                await self._lead(lease, changed)
        finally:
            for watch in watches:
                watch.stop()

    async def _campaign(self):
        try:
            lease = await asyncio.to_thread(self.store.lease, self.ttl)
            won = await asyncio.to_thread(
                self.store.create, self.store.keys.election, {"node": self.node}, lease
            )
        except StoreUnavailable:
            return None
        if not won:
            with contextlib.suppress(StoreUnavailable):
                await asyncio.to_thread(lease.revoke)
            return None
        log.info("%s coordinates the fleet", self.node)
        self.leading = True
        return lease

    async def _lead(self, lease, changed: asyncio.Event) -> None:
        refreshed = time.monotonic()
        try:
            while True:
                if time.monotonic() - refreshed > self.ttl / 3:
                    if not await asyncio.to_thread(self.store.refresh, lease):
                        return  # the lease ran out: someone else may lead now
                    refreshed = time.monotonic()
                changed.clear()
                await asyncio.to_thread(self.pass_once)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), 1.0)
        except StoreUnavailable as exc:
            log.warning("%s stops coordinating: %s", self.node, exc)
        finally:
            self.leading = False

    def pass_once(self) -> Verdict:
        """One look at the fleet: step every running rollout; blocking."""
        keys = self.store.keys
        reports = {
            key[len(keys.nodes) :]: doc for key, doc in self.store.get_prefix(keys.nodes).items()
        }
        views = {node: node_models(report) for node, report in reports.items()}
        rollouts: dict[str, FleetRollout] = {}
        now = time.time()
        for key, (doc, revision) in self.store.get_prefix_revisions(keys.rollouts).items():
            model = keys.model_of(key)
            try:
                rollout = from_json(doc)
            except (KeyError, TypeError, ValueError):
                continue
            if not rollout.finished:
                result = step(rollout, views, now)
                if result.rollout != rollout:
                    also = {}
                    if result.rollout.status == PROMOTED:  # the target moves in the same write
                        also[keys.target(model)] = target_doc(result.rollout.candidate,
                                                              f"rollout ({self.node})")  # fmt: skip
                    if not self.store.cas(key, to_json(result.rollout), revision, also):
                        continue  # written meanwhile (an operator): look again next pass
                    if result.note:
                        write_audit(self.store, "rollout", model, result.note,
                                    status=result.rollout.status, wave=result.rollout.wave,
                                    coordinator=self.node)  # fmt: skip
                    rollout = result.rollout
            rollouts[model] = rollout
        targets = {}
        for key, doc in self.store.get_prefix(keys.models).items():
            model = keys.model_of(key)
            if model and key.endswith("/target"):
                targets[model] = Target(int(doc["version"]), str(doc["digest"]))
        verdict = fleet_verdict(targets, rollouts, reports)
        if self.on_verdict is not None:
            self.on_verdict(verdict)
        return verdict
