"""A node's fleet source: the fleet's desired state, turned into an offer for its own manager.

It wraps the node's repository source (a directory shared by the fleet, or S3) and watches the
fleet's targets and rollouts in etcd. For each model with a target, it offers exactly the one
version this node should serve (:func:`baton.fleet.rollout.desired`) — and only if the
repository holds that version with the target's digest (the same bytes); otherwise it offers
no version of the model, so whatever the node serves keeps serving, and the reason is kept for
the node's report (the fleet sees the node diverged). A model without a target is offered as
the repository offers it. The manager sees an ordinary offer: the swap contract is the same.

etcd unreachable: the last known targets stand (nothing unloads because the store went away);
the repository's own offers still flow, filtered by those targets. Before etcd has answered
once, nothing is offered: a node that starts while etcd is away loads nothing it might have to
unload, and is not ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from baton.artifacts.files import VersionFiles
from baton.artifacts.manifest import MANIFEST
from baton.fleet.records import read_rollouts, read_targets
from baton.fleet.rollout import FleetRollout, Target, desired
from baton.fleet.store import FleetStore, StoreUnavailable
from baton.fleet.watch import PrefixWatch
from baton.settings import RolloutSettings, VersionPolicy
from baton.sources.base import ModelSpec, Offer, Publish, Source, Unknown

__all__ = ["FleetSource", "FleetView", "available_digests", "fleet_offer", "manifest_digest"]

log = logging.getLogger("baton.fleet")


@dataclass(frozen=True)
class FleetView:
    """What the fleet wants: each model's target and rollout (as last read from etcd)."""

    targets: Mapping[str, Target] = field(default_factory=dict)
    rollouts: Mapping[str, FleetRollout] = field(default_factory=dict)


def manifest_digest(files: VersionFiles) -> str | None:
    """The version's digest: the SHA-256 of its manifest (``None`` without one). Blocking."""
    if files.digest is not None:
        return files.digest
    try:
        return hashlib.sha256((files.path / MANIFEST).read_bytes()).hexdigest()
    except OSError:
        return None


def fleet_offer(
    specs: Mapping[str, ModelSpec],
    view: FleetView,
    node: str,
    digest_of: Callable[[VersionFiles], str | None] = manifest_digest,
) -> tuple[dict[str, ModelSpec], dict[str, str]]:
    """(the offer for ``node``, model → why its desired version is not offered)."""
    offer: dict[str, ModelSpec] = {}
    notes: dict[str, str] = {}
    for name, spec in specs.items():
        want = desired(node, view.targets.get(name), view.rollouts.get(name))
        if want is None:
            offer[name] = spec  # not managed by the fleet: the repository's own offer
            continue
        files = spec.versions.get(want.version)
        if files is None:
            notes[name] = f"version {want.version} is not in this node's repository"
            offer[name] = replace(spec, versions={})
            continue
        digest = digest_of(files)
        if digest != want.digest:
            notes[name] = (f"version {want.version} here has digest {str(digest)[:12]}, the "
                           f"fleet's is {want.digest[:12]}: other bytes")  # fmt: skip
            offer[name] = replace(spec, versions={})
            continue
        offer[name] = _offered(spec, want, view.rollouts.get(name), digest_of)
    for name in view.targets.keys() - specs.keys():
        notes[name] = "the model is not in this node's repository"
    return offer, notes


def _offered(spec: ModelSpec, want: Target, rollout: FleetRollout | None,
             digest_of: Callable[[VersionFiles], str | None]) -> ModelSpec:  # fmt: skip
    """``spec`` with only the version the fleet wants (its files already checked). For a node a
    fleet rollout with ``canary_steps`` has waved, the stable version stays offered beside the
    candidate and the model's settings turn to a canary through those steps: its manager moves
    the weight step by step, with the model's own gates, then promotes or rolls back."""
    only = replace(spec, versions={want.version: spec.versions[want.version]})
    if (rollout is None or rollout.finished or not rollout.canary_steps
            or want != rollout.candidate or spec.settings is None):  # fmt: skip
        return only
    stable = spec.versions.get(rollout.stable.version)
    if stable is None or digest_of(stable) != rollout.stable.digest:
        return only  # the stable version is not here as the fleet knows it: at once, then
    canary = RolloutSettings(
        mode="canary", steps=rollout.canary_steps, interval=rollout.canary_interval,
        gates=spec.settings.rollout.gates,
    )  # fmt: skip
    settings = spec.settings.model_copy(
        update={"rollout": canary, "version_policy": VersionPolicy(latest=1)}
    )
    return replace(spec, settings=settings,
                   versions={want.version: spec.versions[want.version],
                             rollout.stable.version: stable})  # fmt: skip


def available_digests(specs: Mapping[str, ModelSpec], newest: int = 10
                      ) -> dict[str, dict[int, str | None]]:  # fmt: skip
    """The digests of the newest ``newest`` versions of each model the repository offers."""
    return {
        name: {v: manifest_digest(spec.versions[v]) for v in sorted(spec.versions)[-newest:]}
        for name, spec in specs.items()
    }


class FleetSource:
    def __init__(self, store: FleetStore, node: str, inner: Source) -> None:
        self.name = f"fleet:{store.keys.root}"
        self.store, self.node, self.inner = store, node, inner
        self.view = FleetView()
        self.reachable = True  # whether etcd answered the last read
        self.view_read = False  # nothing is offered before the fleet's view was read once
        self.notes: dict[str, str] = {}  # model → why its desired version is not offered
        self.available: dict[str, dict[int, str | None]] = {}  # model → version → digest
        self._inner_offer: Offer | None = None
        self._listing: Mapping[str, ModelSpec] | None = None  # the repository's last listing
        self._changed = asyncio.Event()
        self._published = asyncio.Event()

    async def refresh(self) -> None:
        await self.inner.refresh()
        published = self._published
        self._changed.set()
        await published.wait()

    def _take(self, source: str, offer: Offer) -> None:
        self._inner_offer = offer
        self._changed.set()

    async def run(self, publish: Publish) -> None:
        loop = asyncio.get_running_loop()
        watches = [PrefixWatch(self.store, prefix, self._changed)
                   for prefix in (self.store.keys.models, self.store.keys.rollouts)]  # fmt: skip
        for watch in watches:
            watch.start(loop)
        inner = loop.create_task(self.inner.run(self._take), name=f"source {self.inner.name}")
        last: object = None
        try:
            while True:
                await self._changed.wait()
                self._changed.clear()
                try:
                    offer = await self._offer()
                    if offer is not None and offer != last:
                        publish(self.name, offer)
                        last = offer
                except Exception:  # a bug here must not stop the node following the fleet
                    log.exception("the fleet source could not make an offer; retrying")
                    loop.call_later(1.0, self._changed.set)
                finally:
                    self._published.set()  # refresh() returns, whether or not it published
                    self._published = asyncio.Event()
        finally:
            for watch in watches:
                watch.stop()
            inner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await inner

    async def _offer(self) -> Offer | None:
        """This node's offer now; ``None`` before both the repository and etcd answered once.
        While the repository is unknown (S3 away), its last listing is filtered by the
        fleet's current wishes (a version already downloaded still loads; an abort applies)."""
        await self._read_view()
        offer = self._inner_offer
        if isinstance(offer, Unknown):
            if self._listing is None:
                return offer
            offer = self._listing
        if offer is None or not self.view_read:
            return None
        self._listing = offer
        self.available = await asyncio.to_thread(available_digests, offer)
        filtered, self.notes = await asyncio.to_thread(fleet_offer, offer, self.view, self.node)
        return filtered

    async def _read_view(self) -> None:
        try:
            targets, rollouts = await asyncio.to_thread(self._read)
        except StoreUnavailable as exc:
            if self.reachable:
                log.warning("fleet store unreachable (%s); keeping the last targets", exc)
            self.reachable = False
            return
        if not self.reachable:
            log.info("fleet store reachable again")
        self.reachable = self.view_read = True
        self.view = FleetView(targets, rollouts)

    def _read(self) -> tuple[dict[str, Target], dict[str, FleetRollout]]:
        rollouts = {model: r for model, (r, _) in read_rollouts(self.store).items()}
        return read_targets(self.store), rollouts  # rollouts first (see baton.fleet.records)
