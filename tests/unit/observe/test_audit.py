import tempfile
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.observe.audit import AuditLog, read_audit_log, tail_audit_log
from baton.observe.events import EventBus


def test_events_are_appended_and_read_back(tmp_path):
    path = tmp_path / "audit" / "log.jsonl"
    bus, log = EventBus(), AuditLog(path)
    bus.subscribe(log.on_event)
    bus.publish("state", "m", version=1, state="SERVING", data={"x": 1.5})
    bus.publish("swap", "m", version=1, data={"from": None})
    entries, torn = read_audit_log(path)  # readable while still open: every line is flushed
    assert torn == 0
    assert [(e["kind"], e["version"]) for e in entries] == [("state", 1), ("swap", 1)]
    assert entries[0]["data"] == {"x": 1.5} and entries[0]["seq"] == 1
    log.close()
    again = AuditLog(path)  # a restarted server appends
    bus2 = EventBus()
    bus2.subscribe(again.on_event)
    bus2.publish("state", "m", version=2, state="LOADING")
    again.close()
    entries, _ = read_audit_log(path)
    assert [e["version"] for e in entries] == [1, 1, 2]
    assert read_audit_log(path, limit=1)[0][0]["version"] == 2


def test_a_torn_last_line_is_skipped_and_counted(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"kind": "state", "version": 1}\n{"kind": "sta')
    entries, torn = read_audit_log(path)
    assert entries == [{"kind": "state", "version": 1}] and torn == 1


def test_missing_log_is_empty(tmp_path):
    assert read_audit_log(tmp_path / "nope.jsonl") == ([], 0)


def test_rotation_keeps_one_previous_file(tmp_path):
    path = tmp_path / "log.jsonl"
    bus, log = EventBus(), AuditLog(path, max_bytes=400)
    bus.subscribe(log.on_event)
    for v in range(10):
        bus.publish("state", "m", version=v, state="SERVING")
    log.close()
    current, _ = read_audit_log(path)
    previous, _ = read_audit_log(tmp_path / "log.jsonl.1")
    assert path.stat().st_size <= 400 and previous and current
    assert [e["version"] for e in previous + current] == list(
        range(10 - len(previous + current), 10)
    )


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 60), max_size=50),
    limit=st.integers(1, 12),
    chunk=st.integers(8, 300),
    torn=st.booleans(),
)
def test_pages_read_backwards_cover_the_log_exactly_once(sizes, limit, chunk, torn):
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "audit.jsonl"
        lines = [orjson.dumps({"seq": i, "pad": "x" * n}) + b"\n" for i, n in enumerate(sizes)]
        path.write_bytes(b"".join(lines) + (b'{"seq": 99, "tor' if torn else b""))
        seen, before, torn_seen = [], None, 0
        while True:
            page = tail_audit_log(path, limit, before, chunk=chunk)
            assert len(page.entries) <= limit
            seen[:0] = page.entries
            torn_seen += page.torn
            if page.before is None:
                break
            assert before is None or page.before < before
            before = page.before
        assert [e["seq"] for e in seen] == list(range(len(sizes)))
        assert torn_seen == int(torn)


def test_a_write_that_fails_is_reported_and_never_raised(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.symlink_to("/dev/full")
    errors, recovered = [], []
    log = AuditLog(path, on_error=errors.append, on_recover=lambda: recovered.append(True))
    bus = EventBus()
    bus.subscribe(log.on_event)
    bus.publish("state", "m", version=1, state="SERVING")  # does not raise
    bus.publish("state", "m", version=2, state="SERVING")
    assert log.failing and len(errors) == 2 and errors[0].errno == 28  # ENOSPC
    log.close()
