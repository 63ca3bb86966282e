"""The manager under random sequences of offers, operator actions, failing, slow and released
loads (hypothesis), with its invariants checked after every step:

- a model that served keeps serving something unless an operator unloaded it (disabled it or
  removed it from the source);
- only versions that were READY become routable (the serving map holds SERVING versions only);
- nothing is left loaded that is neither serving (stable or candidate) nor draining;
- every state change is a legal transition and has its event.

Every load blocks in its runtime until its gate is set: "fast" versions get an open gate,
"slow" ones are held until a ``release`` step, so runs are deterministic and replayable.
"""

import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baton.control.lifecycle import LOADING_STATES, check_transition
from baton.control.lifecycle import VersionState as S
from baton.errors import BatonError
from baton.settings import VersionPolicy
from tests.unit.control.harness import Harness

MODELS = ("a", "b")
VERSIONS = st.integers(1, 5)
MODEL = st.sampled_from(MODELS)

STEP = st.one_of(
    st.tuples(st.just("publish"), MODEL, VERSIONS, st.sampled_from(["fast", "slow", "bad"])),
    st.tuples(st.just("withdraw"), MODEL, VERSIONS),
    st.tuples(st.just("pin"), MODEL, VERSIONS),
    st.tuples(st.just("unpin"), MODEL),
    st.tuples(st.just("rollback"), MODEL),
    st.tuples(st.just("label"), MODEL, VERSIONS),
    st.tuples(st.just("enable"), MODEL, st.booleans()),
    st.tuples(st.just("remove"), MODEL),
    st.tuples(st.just("policy"), MODEL, st.integers(1, 2)),
    st.tuples(st.just("rollout"), MODEL, VERSIONS),
    st.tuples(st.just("rollout_action"), MODEL, st.sampled_from(["promote", "abort", "pause"])),
    st.tuples(st.just("release"), st.integers(0, 3)),
    st.tuples(st.just("time")),
)


class World:
    """A harness plus what the test knows: gates, operator unloads, the event trail."""

    def __init__(self, root: Path) -> None:
        self.h = Harness(root, max_concurrent_loads=2)
        self.gates: dict[tuple[str, int], threading.Event] = {}  # the latest per version
        self.all_gates: list[threading.Event] = []
        self.removed: set[str] = set()
        self.served: set[str] = set()  # models that served since the operator last unloaded
        self.last_state: dict[tuple[str, int], S] = {}
        self.h.events.subscribe(self._on_event)

    def _on_event(self, event) -> None:
        if event.kind != "state":
            return
        key = (event.model, event.version)
        new = S(event.state)
        check_transition(self.last_state.get(key), new)  # raises on an illegal transition
        self.last_state[key] = new

    # ---- steps ------------------------------------------------------------------------------
    def apply(self, step: tuple) -> None:
        h, kind = self.h, step[0]
        try:
            if kind == "publish":
                _, model, v, how = step
                self.removed.discard(model)
                gate = threading.Event()
                if how != "slow":
                    gate.set()
                self.gates[(model, v)] = gate
                self.all_gates.append(gate)
                behaviour = {"load_gate": gate}
                if how == "bad":
                    behaviour["fail_load"] = "corrupt"
                h.add(v, model=model, **behaviour)  # new files (mtime): a new fingerprint
            elif kind == "withdraw":
                _, model, v = step
                if v in h.catalog.get(model, {}):
                    h.withdraw(v, model=model)
            elif kind == "remove":
                if step[1] in h.catalog and step[1] != "m":
                    del h.catalog[step[1]]
                    self.removed.add(step[1])
                    self.served.discard(step[1])
                    h.offer_all()
            elif kind == "pin":
                h.manager.pin(step[1], step[2])
            elif kind == "unpin":
                h.manager.unpin(step[1])
            elif kind == "rollback":
                h.manager.rollback(step[1])
            elif kind == "label":
                h.manager.set_label(step[1], "l", step[2])
            elif kind == "enable":
                h.manager.set_enabled(step[1], step[2])
                if not step[2]:
                    self.served.discard(step[1])
            elif kind == "policy":
                if step[1] in h.catalog:
                    h.offer(step[1], version_policy=VersionPolicy(latest=step[2]))
            elif kind == "rollout":
                h.manager.start_rollout(step[1], step[2])
            elif kind == "rollout_action":
                h.manager.rollout_action(step[1], step[2])
            elif kind == "release":
                held = [g for g in self.all_gates if not g.is_set()]
                if held:
                    held[step[1] % len(held)].set()
            elif kind == "time":
                h.now += 60
        except BatonError:
            pass  # refused with a reason: an unknown model or version, no rollout, ...

    async def settle(self) -> None:
        """Tick until quiet: every load has ended or is held (in its runtime, or waiting for a
        slot that held loads occupy), and no drain is under way."""
        h = self.h
        deadline = time.monotonic() + 10
        while True:
            while h.manager.tick() is not None:
                pass
            if self._quiet():
                return
            assert time.monotonic() < deadline, "the manager does not settle"
            await asyncio.sleep(0.001)

    def _quiet(self) -> bool:
        h = self.h
        if h.manager._all_drains():
            return False
        if not h.manager._queue.empty:
            return False
        held_in_runtime = 0
        waiting = 0
        for name, m in h.manager.models().items():
            for v, r in m.versions.items():
                if r.state not in LOADING_STATES:
                    continue
                runtime = self._runtime(name, v)
                blocked = (
                    runtime is not None
                    and runtime.load_started.is_set()
                    and not runtime.loaded
                    and runtime.load_gate is not None
                    and not runtime.load_gate.is_set()
                )
                if blocked:
                    held_in_runtime += 1
                elif r.state is S.DISCOVERED and runtime is None:
                    waiting += 1
                else:
                    return False
        return waiting == 0 or held_in_runtime >= 2

    def _runtime(self, model: str, version: int):
        started = [rt for m, v, rt in self.h.built if (m, v) == (model, version)]
        if not started:
            return None
        latest = started[-1]
        return None if latest.unloaded else latest

    # ---- invariants -------------------------------------------------------------------------
    def check(self) -> None:
        h = self.h
        models = h.manager.models()
        for name, m in models.items():
            serving = m.serving()
            if serving and not m.disabled and name not in self.removed:
                self.served.add(name)
            elif name in self.served and not m.disabled and name not in self.removed:
                raise AssertionError(f"{name} stopped serving without an operator unloading it")
            for v, r in m.versions.items():
                assert self.last_state.get((name, v)) == r.state, (name, v, r.state)
                if r.state is S.FAILED:
                    assert r.handle is None
        # the serving map routes SERVING versions only
        for name, route in h.manager.serving_map.models.items():
            for v, handle in route.versions.items():
                r = models[name].versions[v]
                assert r.state is S.SERVING and r.handle is handle, (name, v, r.state)
        # nothing loaded that is neither serving nor draining (no drains are left after settle)
        for name, v, rt in h.built:
            if rt.loaded and not rt.unloaded:
                m = models.get(name)
                r = m.versions.get(v) if m else None
                assert r is not None and r.state is S.SERVING and r.handle.runtime is rt, (
                    f"{name} v{v} left loaded in state {r.state if r else None}"
                )

    def release_all(self) -> None:
        for gate in self.all_gates:
            gate.set()

    async def finish(self) -> None:
        self.release_all()
        await self.settle()
        self.check()
        await self.h.manager.stop()
        for name, v, rt in self.h.built:
            assert not rt.loaded or rt.unloaded, f"{name} v{v} still loaded after stop"


async def run(steps: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as root:
        world = World(Path(root))
        try:
            world.h.add(1, model="a", load_gate=_open())
            await world.settle()
            world.check()
            for step in steps:
                world.apply(step)
                await world.settle()
                world.check()
            await world.finish()
        finally:
            world.release_all()  # never leave a load thread blocked, whatever failed


def _open() -> threading.Event:
    gate = threading.Event()
    gate.set()
    return gate


@settings(
    max_examples=int(os.environ.get("BATON_PROPERTY_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(STEP, max_size=30))
def test_manager_invariants_hold_under_random_operations(steps):
    asyncio.run(run(steps))
