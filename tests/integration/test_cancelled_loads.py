"""Cancelled loads give their memory back: 200 loads of a 50 MB ONNX model, each cancelled
mid-way (an operator pins another version while it loads), leave the process's resident memory
within one model size of where it started.

The manager runs in-process with the real ONNX Runtime backend and the real loader; half the
loads are cancelled while ONNX Runtime builds the session, half while the version warms up, so
both "the step under way finishes, then what it built is unloaded" paths are exercised.
"""

from __future__ import annotations

import asyncio

from baton.artifacts.files import VersionFiles, fingerprint
from baton.control.manager import Manager
from baton.dev.demo import affine_model, write_version
from baton.loading.memory import release_memory, resident_bytes
from baton.observe.events import EventBus
from baton.settings import ModelSettings
from baton.sources.base import ModelSpec

MiB = 2**20
MODEL_BYTES = 50 * MiB
LOADS = 200


async def test_rss_after_200_cancelled_loads_stays_within_one_model_size(tmp_path):
    root = tmp_path / "repo" / "m"
    write_version(root, 1, affine_model(1.0, padding_floats=16))  # same signature, tiny
    write_version(root, 2, affine_model(2.0, padding_floats=MODEL_BYTES // 4))
    versions = {v: VersionFiles(root / str(v), fingerprint(root / str(v))) for v in (1, 2)}
    events = EventBus()
    manager = Manager(events, max_concurrent_loads=1)
    manager.publish("test", {"m": ModelSpec("m", ModelSettings(), versions)})
    manager.start()
    reached: dict[str, asyncio.Event] = {}

    def on_event(event):
        if event.kind == "state" and event.version == 2 and event.state in reached:
            reached[event.state].set()

    events.subscribe(on_event)
    m = None
    try:
        assert await manager.wait_until(lambda: manager.synced, timeout=60)
        m = manager.model("m")
        manager.pin("m", 1)
        assert await manager.wait_until(lambda: m.settled() and m.serving() == [1], 60)
        release_memory()
        start = resident_bytes()
        cancelled_in = {"LOADING": 0, "WARMING": 0}
        for i in range(LOADS):
            phase = "LOADING" if i % 2 else "WARMING"
            reached.clear()
            reached[phase] = asyncio.Event()
            manager.pin("m", 2)
            await asyncio.wait_for(reached[phase].wait(), 60)
            manager.pin("m", 1)  # version 2 is no longer wanted: its load is cancelled
            assert await manager.wait_until(lambda: m.settled(), timeout=60)
            r = m.versions[2]
            assert r.state.value == "UNLOADED" and r.reason == "cancelled", (r.state, r.reason)
            cancelled_in[phase] += 1
        release_memory()
        grown = resident_bytes() - start
        print(f"\nRSS after {LOADS} cancelled loads of a {MODEL_BYTES // MiB} MiB model: "
              f"{grown / MiB:+.1f} MiB ({cancelled_in})")  # fmt: skip
        assert grown < MODEL_BYTES, f"RSS grew {grown / MiB:.1f} MiB"
        assert m.serving() == [1]
    finally:
        await manager.stop()
