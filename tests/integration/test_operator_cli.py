"""Operator actions on a real server through the `baton` command line, as a new user meets
them: each prints what changed and the table after it, errors are one line, and the fixes of
issue 10's reproductions hold end to end."""

from __future__ import annotations

import os
import re
import stat

import httpx
import orjson
import pytest

from baton.dev.demo import affine_model, write_version
from baton.dev.testing import audit_entries

from .conftest import baton_cli, one_line_error, served_version, wait_for


def table_row(stdout: str, model: str, version: int) -> list[str]:
    for line in stdout.splitlines():
        cells = line.split()
        if cells[:2] == [model, str(version)]:
            return cells
    raise AssertionError(f"no row for {model} v{version} in:\n{stdout}")


def test_actions_say_what_changed_and_an_aborted_version_comes_back(server_factory, repo):
    server = server_factory(repo)
    url = ("--url", server.url)

    out = baton_cli("rollout", "start", "m", "--to", "1", "--steps", "50,100", "--interval", "1m",
                    *url)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("m: rollout v2 → v1 running, step 1/2 at 50%")

    out = baton_cli("rollout", "abort", "m", *url)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first.startswith("m: rollout v2 → v1 aborted: v2 serves all traffic; v1 retired")
    assert "no rollout in progress" not in out.stdout
    assert table_row(out.stdout, "m", 1)[2] == "UNLOADED" and "rolled back" in out.stdout
    assert table_row(out.stdout, "m", 2)[2:5] == ["SERVING", "0", "default"]

    again = baton_cli("rollout", "start", "m", "--to", "1", *url)  # was: 404
    assert again.returncode == 0, again.stderr
    out = baton_cli("rollout", "promote", "m", *url)
    assert out.returncode == 0 and "promoted: v1 serves all traffic; v2 retired" in out.stdout
    assert served_version(server.url) == "1"
    assert table_row(out.stdout, "m", 2)[2] == "UNLOADED"  # the table after the action

    out = baton_cli("pin", "m", "2", *url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("m: pinned to version 2 (was 1)")
    assert table_row(out.stdout, "m", 2)[2:6] == ["SERVING", "0", "default", "pinned"]
    assert served_version(server.url) == "2"

    out = baton_cli("rollback", "m", *url)
    assert out.returncode == 0 and out.stdout.startswith("m: rolled back to version 1 (was 2)")
    assert table_row(out.stdout, "m", 1)[2:4] == ["SERVING", "0"]  # already in effect
    assert served_version(server.url) == "1"

    out = baton_cli("unpin", "m", *url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("m: unpinned version 1; the version policy (latest 1) decides")
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'baton_rollbacks_total{model="m",reason="operator"} 2.0' in metrics  # rollback, abort


def test_json_output_and_global_flags_in_any_position(server_factory, repo):
    server = server_factory(repo)
    for args in (("models", "--json", "--url", server.url),
                 ("--json", "models", "--url", server.url),
                 ("--url", server.url, "--json", "models")):  # fmt: skip
        out = baton_cli(*args)
        assert out.returncode == 0, out.stderr
        assert orjson.loads(out.stdout)[0]["name"] == "m"
    out = baton_cli("events", "--model", "m", "--json", "--url", server.url)
    assert any(e["kind"] == "swap" for e in orjson.loads(out.stdout))
    out = baton_cli("rollout", "status", "m", "--url", server.url, "--json")
    assert orjson.loads(out.stdout)["rollout"] is None
    out = baton_cli("audit", "--model", "m", "--url", server.url)
    assert out.returncode == 0 and "SERVING" in out.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("rollout", "start", "m", "--to", "2", "--interval", "5min"), "'5min' is not a duration"),
        (("rollout", "start", "m", "--to", "2", "--steps", "10,x"), "not a list of percentages"),
        (("pin", "m"), "required: version"),
        (("modles",), "invalid choice: 'modles'"),
        (("serve", "--repository", "/nonexistent"), "is not a directory"),
        (("serve", "--repository", ".", "--poll-interval", "soon"), "'soon' is not a duration"),
        (
            ("serve", "--repository", ".", "--http-port", "8123", "--grpc-port", "8123"),
            "http_port and grpc_port are both 8123",
        ),
        (("models", "--url", "http://127.0.0.1:9"), "cannot reach http://127.0.0.1:9"),
    ],
)
def test_mistakes_are_one_line_errors(args, expected):
    assert expected in one_line_error(baton_cli(*args))


def test_serve_help_describes_every_flag():
    out = baton_cli("serve", "--help")
    assert out.returncode == 0
    flags = set(re.findall(r"^  (--[a-z-]+)", out.stdout, re.MULTILINE)) - {"--help"}
    assert {"--repository", "--http-port", "--grpc-port", "--poll-interval",
            "--max-concurrent-loads", "--trusted-key"} <= flags  # fmt: skip
    for flag in flags:  # each flag line (or the next) carries a description
        block = out.stdout.split(flag, 1)[1].split("\n  --", 1)[0]
        assert len(block.split()) >= 3, f"{flag} has no help"


def test_a_second_server_is_refused_in_one_line(server_factory, repo, tmp_path):
    server = server_factory(repo)
    common = ("serve", "--repository", str(repo))
    line = one_line_error(baton_cli(*common, "--http-port", "0", "--grpc-port", "0"))
    assert re.search(r"audit log .*audit.jsonl is in use by another server \(pid \d+\)", line)
    assert "BATON_AUDIT_LOG" in line
    own_log = {"BATON_AUDIT_LOG": str(tmp_path / "second.jsonl")}
    line = one_line_error(baton_cli(*common, "--http-port", "0", "--grpc-port",
                                    str(server.grpc_port), env=own_log))  # fmt: skip
    assert f"gRPC port {server.grpc_port}" in line and "--grpc-port" in line
    line = one_line_error(baton_cli(*common, "--http-port", str(server.port), env=own_log))
    assert f"HTTP port {server.port}" in line and "--http-port" in line
    events = audit_entries(server.url)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))  # one writer: no clashing sequence numbers


def test_one_name_per_state_and_readable_log_lines(server_factory, repo):
    (repo / "m" / "model.yaml").write_text("rollout: {interval: 1m}\n")
    bad = repo / "m" / "3"
    bad.mkdir()
    (bad / "model.onnx").write_bytes(b"truncated")
    server = server_factory(repo)
    wait_for(lambda: httpx.get(f"{server.url}/admin/models/m").json()["versions"][2]["state"]
             == "FAILED")  # fmt: skip
    models = httpx.get(f"{server.url}/admin/models/m").json()
    index = httpx.post(f"{server.url}/v2/repository/index", json={}).json()
    assert models["versions"][0]["state"] == "AVAILABLE"  # v1: offered, never loaded
    assert {"name": "m", "version": "1", "state": "AVAILABLE"} in index

    out = baton_cli("rollout", "start", "m", "--to", "1", "--steps", "50,100", "--url",
                    server.url)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert baton_cli("rollout", "abort", "m", "--url", server.url).returncode == 0
    log = server.output()
    assert "m rollout v2 → v1: RUNNING step 1/2 (50%)" in log
    assert "m rollout v2 → v1: ABORTED — aborted by operator" in log
    assert len(re.findall(r"m v3 → FAILED", log)) == 1  # a failure is logged once
    assert "fits beside the serving version" not in log


def test_keygen_keeps_the_private_key_private(tmp_path):
    old = os.umask(0)
    try:
        out = baton_cli("keygen", "ci", cwd=tmp_path)
    finally:
        os.umask(old)
    assert out.returncode == 0 and "mode 600" in out.stdout
    assert stat.S_IMODE((tmp_path / "ci.key").stat().st_mode) == 0o600
    assert "ci.key exists" in one_line_error(baton_cli("keygen", "ci", cwd=tmp_path))


def test_model_yaml_takes_the_durations_the_cli_takes(server_factory, repo):
    (repo / "m" / "model.yaml").write_text(
        "drain_timeout: 4s\nrollout: {mode: canary, interval: 2m, steps: [10, 100]}\n"
        "update_limits: {min_interval: 1500ms, max_defer: 1h}\n"
    )
    server = server_factory(repo)
    assert httpx.get(f"{server.url}/admin/models/m").json()["config_error"] is None
    (repo / "m" / "model.yaml").write_text("rollout: {interval: 5min}\n")
    error = wait_for(lambda: httpx.get(f"{server.url}/admin/models/m").json()["config_error"])
    assert "'5min' is not a duration" in error


def test_a_restart_after_a_bad_upload_serves_the_newest_version_that_loads(server_factory,
                                                                           tmp_path):  # fmt: skip
    root = tmp_path / "repo"
    for v in (5, 6):
        write_version(root / "m", v, affine_model(float(v)))
    good = (root / "m" / "6" / "model.onnx").read_bytes()
    (root / "m" / "7").mkdir()
    (root / "m" / "7" / "model.onnx").write_bytes(good[: len(good) // 2])  # truncated upload
    write_version(root / "only-bad", 1, affine_model(1.0))
    (root / "only-bad" / "1" / "model.onnx").write_bytes(b"junk")
    server = server_factory(root)  # ready means: everything present at start has settled
    assert served_version(server.url) == "6"
    assert httpx.get(f"{server.url}/v2/models/m/ready").status_code == 200
    events = httpx.get(f"{server.url}/admin/events", params={"model": "m"}).json()
    fallback = [e for e in events if e["kind"] == "fallback"]
    assert fallback and "falls back to version 6" in fallback[0]["message"]
    r = httpx.get(f"{server.url}/v2/models/only-bad/ready")
    assert r.status_code == 400
    assert r.json()["error"] == (
        "model 'only-bad' has no version serving; version 1 FAILED (load_error)"
    )
