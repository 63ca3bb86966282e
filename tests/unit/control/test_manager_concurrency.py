"""Per-model reconcile: a load held mid-way (a FakeRuntime whose load blocks until released)
never delays another model's operator actions; loads are cancelled and unload what they built;
the global bound on concurrent loads holds, with operator loads first.

These run the manager's real loop (``manager.start()``) on the real clock, as a server does.
"""

import asyncio
import threading
import time

import pytest

from baton.control.lifecycle import VersionState as S
from baton.settings import VersionPolicy
from tests.unit.control.harness import Harness

EFFECT = 2.0  # seconds within which another model's operator action must take effect (the
# held load never ends, so any bound shows it is not waited for; the real latency is in bench/)


@pytest.fixture
async def h(tmp_path):
    h = Harness(tmp_path, max_concurrent_loads=2)
    h.now = time.time()
    h.manager._clock = time.time  # the real clock: the loop's timers and the records agree
    yield h
    for _, _, rt in h.built:  # never leave a load thread blocked
        if rt.load_gate is not None:
            rt.load_gate.set()
    await h.manager.stop()


async def until(predicate, timeout=5.0):
    deadline = time.perf_counter() + timeout
    while not predicate():
        assert time.perf_counter() < deadline, "condition not met in time"
        await asyncio.sleep(0.002)


async def timed(predicate, timeout=5.0) -> float:
    started = time.perf_counter()
    await until(predicate, timeout)
    return time.perf_counter() - started


async def held_load(h, model, version):
    """Start a load of ``model`` ``version`` that blocks in the runtime until released."""
    gate = threading.Event()
    h.add(version, model=model, load_gate=gate, hold_bytes=1 << 20)
    await until(lambda: any(m == model and v == version and rt.load_started.is_set()
                            for m, v, rt in h.built))  # fmt: skip
    runtime = next(rt for m, v, rt in h.built if m == model and v == version)
    return gate, runtime


async def two_models(h):
    """Model b serves version 2 with version 1 kept loaded (latest 2); model a serves 1."""
    h.add(1, model="a")
    h.add(1, model="b")
    h.add(2, model="b")
    h.offer("b", version_policy=VersionPolicy(latest=2))
    h.manager.start()
    await until(lambda: h.manager.synced and h.default("b") == 2 and h.default("a") == 1)


async def test_pin_rollback_and_abort_of_b_take_effect_while_a_load_of_a_is_held(h):
    await two_models(h)
    gate, runtime = await held_load(h, "a", 2)
    assert h.state(2, "a") is S.LOADING

    h.manager.pin("b", 1)
    assert await timed(lambda: h.default("b") == 1) < EFFECT
    h.manager.unpin("b")
    assert await timed(lambda: h.default("b") == 2) < EFFECT
    h.manager.rollback("b")
    assert await timed(lambda: h.default("b") == 1) < EFFECT
    h.manager.unpin("b")
    await until(lambda: h.default("b") == 2)

    h.manager.start_rollout("b", 1)
    await until(lambda: h.manager.model("b").rollout is not None)
    assert h.manager.serving_map.get("b").canary is not None
    h.manager.rollout_action("b", "abort")
    assert await timed(lambda: h.manager.serving_map.get("b").canary is None) < EFFECT
    assert h.state(2, "a") is S.LOADING and not runtime.loaded  # a's load is still held

    gate.set()
    await until(lambda: h.default("a") == 2)


@pytest.mark.parametrize("how", ["withdraw", "pin elsewhere", "shut down"])
async def test_a_cancelled_load_unloads_what_it_built(h, how):
    await two_models(h)
    gate, runtime = await held_load(h, "a", 2)
    if how == "withdraw":
        h.withdraw(2, model="a")
    elif how == "pin elsewhere":
        h.manager.pin("a", 1)
    else:
        stopping = asyncio.create_task(h.manager.stop())
    await asyncio.sleep(0.05)
    assert not runtime.unloaded  # the step under way (runtime.load) must end first
    gate.set()  # ... and then what it built is unloaded
    if how == "shut down":
        await stopping
    else:
        await until(lambda: "a" in h.manager.models() and h.state(2, "a") is S.UNLOADED)
    assert runtime.unloaded and runtime._ballast is None
    unloaded = [e for e in h.events.recent(500) if e.model == "a" and e.version == 2
                and e.state == "UNLOADED"]  # fmt: skip
    assert unloaded[-1].reason == "cancelled"
    why = {"withdraw": "withdrawn from its source", "pin elsewhere": "pinned to version 1",
           "shut down": "shutting down"}[how]  # fmt: skip
    assert why in unloaded[-1].message
    if how != "shut down":
        assert h.default("a") == 1  # the serving version never stopped serving


async def test_the_concurrent_load_bound_holds_and_operator_loads_go_first(h):
    await two_models(h)  # max_concurrent_loads=2, nothing loading
    h.manager.pin("a", 1)
    gates = {name: threading.Event() for name in ("c", "d", "e")}
    for name, gate in gates.items():
        h.add(1, model=name, load_gate=gate)
    await until(lambda: {m for m, _, rt in h.built if rt.load_started.is_set()} >= {"c", "d"})
    await asyncio.sleep(0.05)
    assert not h.runtimes_of("e") and h.state(1, "e") is S.DISCOVERED  # e waits for a slot

    h.add(5, model="a")  # pinned to 1: nothing to load ...
    await asyncio.sleep(0.05)
    assert 5 not in h.manager.model("a").versions
    h.manager.pin("a", 5)  # ... until an operator asks: this load jumps the queue
    await until(lambda: 5 in h.manager.model("a").versions)  # queued for a slot
    gates["c"].set()
    await until(lambda: h.default("a") == 5)
    assert not h.runtimes_of("e")  # e still waits: the freed slot went to the operator's load
    gates["d"].set()
    await until(lambda: bool(h.runtimes_of("e")))  # d's slot went to e
    gates["e"].set()
    await until(lambda: h.default("c") == 1 and h.default("d") == 1 and h.default("e") == 1)
    assert max(_peak_loading(h)) == 2  # the bound was reached, never exceeded


def _peak_loading(h):
    """How many versions were loading at once, after each state event."""
    loading: set = set()
    peaks = [0]
    for e in h.events.recent(1000):
        if e.kind != "state":
            continue
        key = (e.model, e.version)
        if e.state in ("VERIFYING", "LOADING", "WARMING"):
            loading.add(key)
        else:
            loading.discard(key)
        peaks.append(len(loading))
    return peaks
