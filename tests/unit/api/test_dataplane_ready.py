"""Node readiness: every extra check must hold, except the one a caller asks to leave out (the
worker pool asks for the node's readiness apart from the workers having heard of it)."""

from __future__ import annotations

from types import SimpleNamespace

from baton.api.dataplane import DataPlane
from baton.observe.metrics import Metrics


class Workers:
    def __init__(self) -> None:
        self.serving = True
        self.heard = False

    def ready(self) -> bool:
        return self.serving

    def told_ready(self) -> bool:
        return self.heard


def test_every_check_holds_but_the_one_ignored():
    manager = SimpleNamespace(synced=True)
    plane = DataPlane(manager, Metrics())  # type: ignore[arg-type]
    workers = Workers()
    plane.ready_checks += [workers.ready, workers.told_ready]
    assert not plane.ready()  # the workers have not heard yet
    assert plane.ready(ignoring=workers.told_ready)  # a bound method equal to the one added
    workers.heard = True
    assert plane.ready()
    workers.serving = False
    assert not plane.ready(ignoring=workers.told_ready)  # other checks still count
    workers.serving = True
    manager.synced = False
    assert not plane.ready() and not plane.ready(ignoring=workers.told_ready)
    manager.synced = True
    plane.shutting_down = True
    assert not plane.ready(ignoring=workers.told_ready)
