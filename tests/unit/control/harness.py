"""A manager whose versions are FakeRuntimes behind real version directories, for unit tests."""

from pathlib import Path

import numpy as np

from baton.artifacts.files import VersionFiles, fingerprint
from baton.control.manager import Manager
from baton.loading.preflight import MemoryLimits
from baton.observe.events import EventBus
from baton.runtimes.fake import FakeRuntime
from baton.settings import ModelSettings
from baton.sources.base import ModelSpec


class Harness:
    """A manager whose versions are FakeRuntimes configured per version number."""

    def __init__(self, tmp_path: Path, memory: MemoryLimits | None = None, **manager):
        self.root = tmp_path
        self.events = EventBus()
        self.behaviour: dict[int, dict] = {}
        self.runtimes: dict[int, FakeRuntime] = {}
        self.now = 1000.0  # the manager's fake clock
        self.manager = Manager(
            self.events,
            runtime_factory=self._factory,
            clock=lambda: self.now,
            memory=memory,
            **manager,
        )
        self.settings = ModelSettings(drain_timeout=2.0)
        self.versions: dict[int, VersionFiles] = {}

    def _factory(self, files, settings):
        v = int(files.path.name)
        rt = FakeRuntime(**({"offset": float(v)} | self.behaviour.get(v, {})))
        self.runtimes[v] = rt
        return rt

    def add(self, v: int, **behaviour):
        d = self.root / "m" / str(v)
        d.mkdir(parents=True, exist_ok=True)
        (d / "weights").write_text(f"version {v}")
        self.behaviour[v] = behaviour
        self.versions[v] = VersionFiles(d, fingerprint(d))
        self.offer()

    def offer(self, **settings):
        if settings:
            self.settings = self.settings.model_copy(update=settings)
        self.manager.publish("test", {"m": ModelSpec("m", self.settings, dict(self.versions))})

    async def settle(self):
        """Reconcile until nothing is left to do (loads and drains awaited); the actions."""
        actions = await self.manager.idle()
        assert len(actions) < 100, "manager does not converge"
        return actions

    def state(self, v):
        return self.manager.model("m").versions[v].state

    def default(self):
        return self.manager.serving_map.get("m").default

    async def infer(self):
        route = self.manager.serving_map.get("m")
        handle = route.versions[route.default]
        with handle.lease():
            out = await handle.predict({"x": np.zeros((1, 4), np.float32)})
        return handle.version, float(out["y"][0, 0])
