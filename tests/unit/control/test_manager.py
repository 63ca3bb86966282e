"""The manager, stepped with tick(): FakeRuntime versions behind real version directories."""

import asyncio

import numpy as np
import pytest

from baton.artifacts.files import VersionFiles, fingerprint
from baton.control.lifecycle import VersionState as S
from baton.control.policy import Load, Retire, Serve
from baton.errors import Conflict, NotFound
from baton.settings import VersionPolicy
from baton.types import Signature, TensorSpec
from tests.unit.control.harness import Harness


@pytest.fixture
def h(tmp_path):
    return Harness(tmp_path)


async def test_first_version_loads_and_serves(h):
    h.add(1)
    assert await h.settle() == [Load("m", 1), Serve("m", 1)]
    assert h.state(1) is S.SERVING
    assert await h.infer() == (1, 1.0)
    states = [e.state for e in h.events.recent() if e.kind == "state"]
    assert states == ["DISCOVERED", "VERIFYING", "LOADING", "WARMING", "READY", "SERVING"]


async def test_new_version_replaces_old_availability_preserving(h):
    h.add(1)
    await h.settle()
    h.add(2)
    actions = await h.settle()
    assert actions == [Load("m", 2), Serve("m", 2), Retire("m", 1)]
    assert (h.state(1), h.state(2)) == (S.UNLOADED, S.SERVING)
    assert h.runtimes[1].unloaded and not h.runtimes[2].unloaded
    assert await h.infer() == (2, 2.0)
    swaps = [(e.data["from"], e.version) for e in h.events.recent() if e.kind == "swap"]
    assert swaps == [(None, 1), (1, 2)]


async def test_events_are_race_free(h):
    """SERVING is published after the version is routable; DRAINING before it stops being."""
    seen = []

    def check(event):
        if event.kind == "state" and event.state in ("SERVING", "DRAINING"):
            route = h.manager.serving_map.get("m")
            seen.append((event.version, event.state, event.version in route.versions))

    h.events.subscribe(check)
    h.add(1)
    await h.settle()
    h.add(2)
    await h.settle()
    assert seen == [(1, "SERVING", True), (2, "SERVING", True), (1, "DRAINING", True)]
    assert 1 not in h.manager.serving_map.get("m").versions


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ({"fail_load": "corrupt file"}, "load_error"),
        ({"nan_output": True}, "non_finite_output"),
        (
            {
                "signature": Signature(
                    (TensorSpec("x", "FP32", (-1, 5)),), (TensorSpec("y", "FP32", (-1, 5)),)
                )
            },
            "incompatible_signature",
        ),
        (
            {
                "signature": Signature(
                    (TensorSpec("x", "INT64", (-1, 4)),), (TensorSpec("y", "FP32", (-1, 4)),)
                )
            },
            "incompatible_signature",
        ),
    ],
)
async def test_bad_version_fails_and_old_keeps_serving(h, behaviour, reason):
    h.add(1)
    await h.settle()
    h.add(2, **behaviour)
    await h.settle()
    record = h.manager.model("m").versions[2]
    assert record.state is S.FAILED and record.reason == reason and record.message
    assert h.state(1) is S.SERVING and h.default() == 1
    assert await h.infer() == (1, 1.0)
    assert h.runtimes[2].unloaded or not h.runtimes[2].loaded
    # not retried while the files are unchanged
    h.offer()
    assert await h.settle() == []


async def test_failed_version_is_retried_when_its_files_change(h):
    h.add(1)
    await h.settle()
    h.add(2, fail_load="truncated")
    await h.settle()
    assert h.state(2) is S.FAILED
    h.add(2)  # rewritten: new fingerprint, healthy behaviour
    await h.settle()
    assert h.state(2) is S.SERVING and h.state(1) is S.UNLOADED


async def test_breaking_change_allowed_by_settings(h):
    h.add(1)
    await h.settle()
    h.offer(allow_breaking_change=True)
    h.add(
        2,
        signature=Signature(
            (TensorSpec("x", "FP32", (-1, 4)),), (TensorSpec("z", "FP32", (-1, 4)),)
        ),
    )
    await h.settle()
    assert h.state(2) is S.SERVING


async def test_files_changed_between_offer_and_load_fail_verification(h):
    h.add(1)
    (h.versions[1].path / "weights").write_text("tampered after discovery")
    await h.settle()
    record = h.manager.model("m").versions[1]
    assert record.state is S.FAILED and record.reason == "files_changed"


async def test_pin_and_rollback(h):
    for v in (1, 2, 3):
        h.add(v)
        await h.settle()
    assert h.default() == 3
    assert h.manager.rollback("m") == 2
    await h.settle()
    assert h.default() == 2 and h.state(3) is S.UNLOADED and h.manager.model("m").pinned == 2
    h.manager.pin("m", 1)
    await h.settle()
    assert h.default() == 1
    h.manager.unpin("m")
    await h.settle()
    assert h.default() == 3 and h.state(1) is S.UNLOADED
    with pytest.raises(NotFound):
        h.manager.pin("m", 9)
    with pytest.raises(NotFound):
        h.manager.pin("nope", 1)


async def test_rollback_without_history_picks_the_next_older_version(h):
    h.add(1)
    h.add(2)
    await h.settle()
    assert h.manager.rollback("m") == 1
    await h.settle()
    assert h.default() == 1
    h.manager.pin("m", 1)
    h.manager.model("m").history.clear()
    with pytest.raises(Conflict):
        h.manager.rollback("m")


async def test_labels_keep_versions_loaded_and_route(h):
    h.add(1)
    await h.settle()
    h.add(2)
    h.manager.set_label("m", "stable", 1)
    await h.settle()
    route = h.manager.serving_map.get("m")
    assert route.default == 2 and set(route.versions) == {1, 2} and route.labels == {"stable": 1}


async def test_version_policy_latest_two(h):
    h.offer(version_policy=VersionPolicy(latest=2))
    for v in (1, 2, 3):
        h.add(v)
    await h.settle()
    assert sorted(h.manager.serving_map.get("m").versions) == [2, 3]
    assert h.default() == 3


async def test_model_removed_from_source_is_unloaded_and_forgotten(h):
    h.add(1)
    await h.settle()
    h.manager.publish("test", {})
    await h.settle()
    assert h.runtimes[1].unloaded
    assert "m" not in h.manager.models() and h.manager.serving_map.get("m") is None


async def test_disable_and_enable(h):
    h.add(1)
    await h.settle()
    h.manager.set_enabled("m", False)
    await h.settle()
    assert h.state(1) is S.UNLOADED and h.default() is None
    h.manager.set_enabled("m", True)
    await h.settle()
    assert h.state(1) is S.SERVING


async def test_retired_version_drains_before_unload(h):
    h.add(1, predict_seconds=0.3)
    await h.settle()
    request = asyncio.create_task(h.infer())
    await asyncio.sleep(0.05)
    h.add(2)
    await h.manager.idle(drains=False)
    assert h.state(1) is S.DRAINING and not h.runtimes[1].unloaded
    assert await request == (1, 1.0)  # finished on the version it started on
    await h.manager.wait_drained()
    assert h.state(1) is S.UNLOADED and h.runtimes[1].unloaded
    unloaded = [e for e in h.events.recent() if e.state == "UNLOADED"][-1]
    assert unloaded.data["forced"] is False and unloaded.data["drain_seconds"] > 0.1


async def test_drain_timeout_forces_unload_and_reports_it(h):
    h.offer(drain_timeout=0.05)
    h.add(1, predict_seconds=0.4)
    await h.settle()
    request = asyncio.create_task(h.infer())
    await asyncio.sleep(0.05)
    h.add(2)
    await h.settle()
    unloaded = [e for e in h.events.recent() if e.state == "UNLOADED"][-1]
    assert unloaded.version == 1 and unloaded.reason == "drain_timeout"
    assert unloaded.data["forced"] is True
    # The runtime was unloaded with the request still running; the running call keeps its own
    # reference and completes, and new requests already go to version 2.
    assert await request == (1, 1.0)
    assert h.runtimes[1].unloaded and h.default() == 2


async def test_wait_until_and_settled(h):
    h.add(1, load_seconds=0.1)
    h.manager.start()
    try:
        assert await h.manager.wait_until(
            lambda: "m" in h.manager.models() and h.manager.model("m").settled(), timeout=5
        )
        assert h.state(1) is S.SERVING
        assert await h.manager.wait_until(lambda: h.manager.synced, timeout=5)
    finally:
        await h.manager.stop()
    assert h.runtimes[1].unloaded
    assert [e.state for e in h.events.recent() if e.kind == "state"][-2:] == [
        "DRAINING",
        "UNLOADED",
    ]


async def test_unloaded_versions_whose_files_are_gone_are_forgotten(h):
    for v in (1, 2, 3):
        h.add(v)
        await h.settle()
    assert set(h.manager.model("m").versions) == {1, 2, 3}
    del h.versions[1]
    h.offer()
    await h.settle()
    assert set(h.manager.model("m").versions) == {2, 3}
    assert h.manager.model("m").history == [1, 2, 3]


async def test_batching_never_mixes_versions_and_a_swap_loses_no_queued_request(h):
    """Requests queued in version 1's batcher when version 2 takes over are answered by
    version 1 (their lease holds the drain); new requests go to version 2's own batcher."""
    h.offer(max_batch_size=16, max_queue_delay_ms=300)
    h.add(1)
    await h.settle()
    old = h.manager.serving_map.get("m").versions[1]
    assert old.batcher is not None

    async def request(handle, value):
        with handle.lease():
            out = await handle.predict({"x": np.full((1, 4), value, np.float32)})
        return handle.version, float(out["y"][0, 0]) - value

    queued = [asyncio.create_task(request(old, i)) for i in range(5)]
    await asyncio.sleep(0.05)
    assert old.inflight == 5
    h.add(2)
    await h.manager.idle(drains=False)
    assert h.state(1) is S.DRAINING
    new = h.manager.serving_map.get("m").versions[2]
    fresh = [asyncio.create_task(request(new, i)) for i in range(3)]
    assert [await t for t in queued] == [(1, 1.0)] * 5
    assert [await t for t in fresh] == [(2, 2.0)] * 3
    await h.manager.wait_drained()
    assert h.state(1) is S.UNLOADED
    warmup = 1 + 3  # a quick model gets three extra warm-up runs
    assert h.runtimes[1].calls == warmup + 1  # and one batch of five
    assert h.runtimes[2].calls == warmup + 1


async def test_batching_is_disabled_with_a_reason_for_fixed_batch_dimensions(h):
    h.offer(max_batch_size=8)
    h.add(
        1,
        signature=Signature((TensorSpec("x", "FP32", (1, 4)),), (TensorSpec("y", "FP32", (1, 4)),)),
    )
    await h.settle()
    assert h.manager.serving_map.get("m").versions[1].batcher is None
    event = next(e for e in h.events.recent() if e.kind == "batching_disabled")
    assert "no dynamic first dimension" in event.message


async def test_waiting_for_the_first_sync_wakes_up(h):
    h.add(1)
    h.manager.start()
    try:
        assert await h.manager.wait_until(lambda: h.manager.synced, timeout=5)
    finally:
        await h.manager.stop()


async def test_golden_mismatch_fails_the_version_and_the_old_one_keeps_serving(h):
    h.add(1)
    await h.settle()
    h.add(2)  # computes y = x + 2 ...
    golden = h.versions[2].path / "golden"
    golden.mkdir()
    (golden / "case.json").write_text(
        '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}],'
        ' "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]}]}'
    )  # ... but its golden set expects x + 1
    h.versions[2] = VersionFiles(h.versions[2].path, fingerprint(h.versions[2].path))
    h.offer()
    await h.settle()
    record = h.manager.model("m").versions[2]
    assert record.state is S.FAILED and record.reason == "golden_mismatch"
    assert h.default() == 1 and await h.infer() == (1, 1.0)
