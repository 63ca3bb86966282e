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

from baton.fleet.records import read_rollouts, read_targets
from baton.fleet.rollout import (
    PROMOTED,
    FleetRollout,
    NodeModel,
    Target,
    VersionStats,
    step,
    to_json,
)
from baton.fleet.store import FleetStore, StoreUnavailable
from baton.fleet.verdict import Verdict, fleet_verdict
from baton.fleet.watch import PrefixWatch

__all__ = ["Coordinator", "audit_entry", "node_models", "target_doc", "write_audit"]

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
            m.get("note"),
            m.get("default"),
        )
    return out


def target_doc(target: Target, set_by: str) -> dict:
    """The JSON of a model's target key."""
    return {"version": target.version, "digest": target.digest, "set_by": set_by}


def audit_entry(store: FleetStore, kind: str, model: str, message: str, **data
                ) -> tuple[str, dict]:  # fmt: skip
    """A fleet audit entry's key (``audit/<time>-<id>``) and value, to write with a change."""
    stamp = f"{time.time():017.6f}-{uuid.uuid4().hex[:6]}"
    return store.keys.audit(stamp), {"time": time.time(), "kind": kind, "model": model,
                                     "message": message, "data": data}  # fmt: skip


def write_audit(store: FleetStore, kind: str, model: str, message: str, **data) -> None:
    """A fleet audit entry on its own; blocking."""
    store.put(*audit_entry(store, kind, model, message, **data))


class Coordinator:
    def __init__(
        self, store: FleetStore, node: str, ttl: int = 10,
        on_verdict: Callable[[Verdict], None] | None = None,
    ) -> None:  # fmt: skip
        self.store, self.node, self.ttl = store, node, ttl
        self.on_verdict = on_verdict
        self.leading = False

    async def run(self) -> None:
        """Campaign whenever nobody leads (watching the election key), lead while elected."""
        election = asyncio.Event()
        watch = PrefixWatch(self.store, self.store.keys.election, election)
        watch.start(asyncio.get_running_loop())
        try:
            while True:
                election.clear()
                lease = await self._campaign()
                if lease is None:  # someone leads (or etcd is away): wait for a change
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(election.wait(), self.ttl / 2)
                    continue
                await self._lead(lease)
        finally:
            watch.stop()

    async def _campaign(self):
        """Our lease if we now hold the election key; ``None`` if another node does."""
        try:
            holder, _ = await asyncio.to_thread(self.store.get, self.store.keys.election)
            if holder is not None:
                return None
            lease = await asyncio.to_thread(self.store.lease, self.ttl)
            won = await asyncio.to_thread(
                self.store.create, self.store.keys.election, {"node": self.node}, lease
            )
        except StoreUnavailable:
            return None
        if not won:
            with contextlib.suppress(StoreUnavailable):
                await asyncio.to_thread(self.store.revoke, lease)
            return None
        log.info("%s coordinates the fleet", self.node)
        self.leading = True
        return lease

    async def _lead(self, lease) -> None:
        """Step the rollouts on every change of the nodes' reports or the rollout records, and
        every second; keep the lease alive. Returns when the lease is lost or etcd is away;
        gives the lead up (revokes the lease) on the way out, so another node takes over at
        once."""
        changed = asyncio.Event()
        keys = self.store.keys
        watches = [
            PrefixWatch(self.store, prefix, changed) for prefix in (keys.nodes, keys.rollouts)
        ]
        for watch in watches:
            watch.start(asyncio.get_running_loop())
        refreshed = time.monotonic()
        try:
            while True:
                if time.monotonic() - refreshed > self.ttl / 3:
                    if not await asyncio.to_thread(self.store.refresh, lease):
                        log.warning("%s lost its coordinator lease", self.node)
                        return
                    refreshed = time.monotonic()
                changed.clear()
                try:
                    await asyncio.to_thread(self.pass_once)
                except StoreUnavailable:
                    raise
                except Exception:  # one bad record or report must not stop every rollout
                    log.exception("a coordinator pass failed; trying again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), 1.0)
        except StoreUnavailable as exc:
            log.warning("%s stops coordinating: %s", self.node, exc)
        finally:
            self.leading = False
            for watch in watches:
                watch.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.to_thread(self.store.revoke, lease), 2.0)

    def pass_once(self) -> Verdict:
        """One look at the fleet: step every running rollout; blocking."""
        keys = self.store.keys
        reports = {
            key[len(keys.nodes) :]: doc for key, doc in self.store.get_prefix(keys.nodes).items()
        }
        views = {}
        for node, report in reports.items():
            try:
                views[node] = node_models(report)
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring the report of %s: %s", node, exc)
        rollouts: dict[str, FleetRollout] = {}
        now = time.time()
        for model, (rollout, revision) in read_rollouts(self.store).items():
            if not rollout.finished:
                result = step(rollout, views, now)
                if result.rollout != rollout:
                    also = {}
                    if result.rollout.status == PROMOTED:  # the target moves in the same write
                        also[keys.target(model)] = target_doc(result.rollout.candidate,
                                                              f"rollout ({self.node})")  # fmt: skip
                    if result.note:
                        r = result.rollout
                        key, doc = audit_entry(
                            self.store, "rollout", model, result.note,
                            status=r.status, wave=r.wave, by=self.node,
                        )  # fmt: skip
                        also[key] = doc
                    if self.store.cas(keys.rollout(model), to_json(result.rollout), revision, also):
                        rollout = result.rollout
                    # else: written meanwhile (an operator): look again next pass
            rollouts[model] = rollout
        verdict = fleet_verdict(read_targets(self.store), rollouts, reports)
        if self.on_verdict is not None:
            self.on_verdict(verdict)
        return verdict
