"""Managers whose versions are FakeRuntimes behind real version directories, for unit tests.

Model ``m`` is the default; other models are named per call. Each version's FakeRuntime is
configured by keyword when it is added (``h.add(2, fail_load="corrupt")``); every runtime the
manager builds is kept, so a test can check that what a cancelled load built was unloaded.
"""

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
    """A manager with a fake clock (``h.now``) over FakeRuntime versions."""

    def __init__(self, tmp_path: Path, memory: MemoryLimits | None = None, **manager):
        self.root = tmp_path
        self.events = EventBus()
        self.behaviour: dict[tuple[str, int], dict] = {}
        self.built: list[tuple[str, int, FakeRuntime]] = []  # every runtime, in build order
        self.now = 1000.0  # the manager's fake clock
        self.manager = Manager(
            self.events,
            runtime_factory=self._factory,
            clock=lambda: self.now,
            memory=memory,
            **manager,
        )
        self.catalog: dict[str, dict[int, VersionFiles]] = {"m": {}}
        self.model_settings: dict[str, ModelSettings] = {"m": ModelSettings(drain_timeout=2.0)}

    # model "m", as most tests use it
    @property
    def versions(self) -> dict[int, VersionFiles]:
        return self.catalog["m"]

    @versions.setter
    def versions(self, value: dict[int, VersionFiles]) -> None:
        self.catalog["m"] = value

    @property
    def settings(self) -> ModelSettings:
        return self.model_settings["m"]

    @property
    def runtimes(self) -> dict[int, FakeRuntime]:
        """The latest runtime built for each version of ``m``."""
        return {v: rt for model, v, rt in self.built if model == "m"}

    def runtimes_of(self, model: str) -> list[FakeRuntime]:
        return [rt for name, _, rt in self.built if name == model]

    def _factory(self, files, settings):
        model, v = files.path.parent.name, int(files.path.name)
        rt = FakeRuntime(**({"offset": float(v)} | self.behaviour.get((model, v), {})))
        self.built.append((model, v, rt))
        return rt

    def add(self, v: int, model: str = "m", **behaviour):
        d = self.root / model / str(v)
        d.mkdir(parents=True, exist_ok=True)
        (d / "weights").write_text(f"{model} version {v}")
        self.behaviour[(model, v)] = behaviour
        self.catalog.setdefault(model, {})[v] = VersionFiles(d, fingerprint(d))
        self.model_settings.setdefault(model, ModelSettings(drain_timeout=2.0))
        self.offer_all()

    def withdraw(self, v: int, model: str = "m"):
        del self.catalog[model][v]
        self.offer_all()

    def offer(self, model: str = "m", **settings):
        if settings:
            self.model_settings[model] = self.model_settings[model].model_copy(update=settings)
        self.offer_all()

    def offer_all(self):
        self.manager.publish(
            "test",
            {
                name: ModelSpec(name, self.model_settings[name], dict(versions))
                for name, versions in self.catalog.items()
            },
        )

    async def settle(self):
        """Reconcile until nothing is left to do (loads and drains awaited); the actions."""
        actions = await self.manager.idle()
        assert len(actions) < 100, "manager does not converge"
        return actions

    def state(self, v, model: str = "m"):
        return self.manager.model(model).versions[v].state

    def default(self, model: str = "m"):
        return self.manager.serving_map.get(model).default

    async def infer(self, model: str = "m"):
        route = self.manager.serving_map.get(model)
        handle = route.versions[route.default]
        with handle.lease():
            out = await handle.predict({"x": np.zeros((1, 4), np.float32)})
        return handle.version, float(out["y"][0, 0])
