from baton.observe.audit import AuditLog, read_audit_log
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
