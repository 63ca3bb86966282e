"""Memory pre-flight in the manager: load beside, refuse, or retire first; each a memory event."""

import gc

import pytest

from baton.control.lifecycle import VersionState as S
from baton.loading.preflight import MemoryLimits
from baton.settings import MemorySettings
from tests.unit.control.harness import Harness

MiB = 2**20


@pytest.fixture(autouse=True)
def _no_garbage_from_earlier_tests():
    """A load's memory is the RSS it adds: an earlier test's manager (and its 40 MiB ballast),
    freed by the garbage collector in the middle of a load, would hide what that load added."""
    gc.collect()


def memory_events(h):
    return [(e.version, e.state) for e in h.events.recent() if e.kind == "memory"]


async def test_a_version_that_fits_loads_beside_the_serving_one(tmp_path):
    h = Harness(tmp_path, MemoryLimits(headroom=10 * MiB, available=lambda: 10**12))
    h.add(1, hold_bytes=40 * MiB)
    await h.settle()
    h.add(2)
    await h.settle()
    assert h.default() == 2 and memory_events(h) == [(1, "beside"), (2, "beside")]
    measured = h.manager.model("m").versions[1].memory
    assert measured is not None and measured >= 30 * MiB  # what loading version 1 added


async def test_a_version_that_does_not_fit_is_refused_and_the_old_one_serves(tmp_path):
    available = {"bytes": 10**12}
    h = Harness(tmp_path, MemoryLimits(headroom=20 * MiB, available=lambda: available["bytes"]))
    h.add(1, hold_bytes=40 * MiB)
    await h.settle()
    available["bytes"] = 50 * MiB  # version 2 is estimated at version 1's ~40 MiB
    h.add(2)
    await h.settle()
    v2 = h.manager.model("m").versions[2]
    assert (v2.state, v2.reason) == (S.FAILED, "insufficient_memory")
    assert "to keep free" in v2.message
    assert h.default() == 1 and h.state(1) is S.SERVING
    assert memory_events(h)[-1] == (2, "refuse")


async def test_a_budget_is_respected(tmp_path):
    h = Harness(tmp_path, MemoryLimits(budget=60 * MiB, available=lambda: 10**12))
    h.add(1, hold_bytes=40 * MiB)
    await h.settle()
    h.add(2)
    await h.settle()
    assert h.manager.model("m").versions[2].reason == "insufficient_memory"
    assert "budget" in h.manager.model("m").versions[2].message


async def test_retire_first_unloads_the_old_version_before_loading_the_new(tmp_path):
    available = {"bytes": 10**12}
    h = Harness(tmp_path, MemoryLimits(headroom=20 * MiB, available=lambda: available["bytes"]))
    h.offer(memory=MemorySettings(when_short="retire_first"))
    h.add(1, hold_bytes=40 * MiB)
    await h.settle()
    available["bytes"] = 50 * MiB
    h.add(2)
    await h.settle()
    assert h.default() == 2 and h.state(1) is S.UNLOADED
    assert memory_events(h)[-1] == (2, "retire_first")
    order = [(e.version, e.state) for e in h.events.recent() if e.kind == "state"]
    assert order.index((1, "UNLOADED")) < order.index((2, "VERIFYING"))
