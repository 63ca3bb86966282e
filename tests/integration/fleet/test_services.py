"""The fleet test infrastructure itself: a real etcd, moto's S3 server, a Baton node process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import etcd3gw.exceptions
import httpx
import pytest

from baton.dev.cluster import Etcd
from baton.dev.demo import affine_model, write_version


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_etcd_put_get_and_prefix(etcd):
    client = etcd.client()
    assert client.status()["version"] == "3.4.23"
    assert client.put("/fleet/a", "1")
    assert client.put("/fleet/b", "2")
    assert client.get("/fleet/a") == [b"1"]
    assert client.get("/fleet/missing") == []
    assert sorted(value for value, _ in client.get_prefix("/fleet/")) == [b"1", b"2"]
    assert etcd.url == f"etcd://127.0.0.1:{etcd.client_port}"


def test_etcd_lease_expires(etcd):
    client = etcd.client()
    lease = client.lease(ttl=2)
    client.put("/fleet/node/a", "alive", lease=lease)
    started = time.monotonic()
    assert client.get("/fleet/node/a") == [b"alive"]
    while client.get("/fleet/node/a"):
        assert time.monotonic() - started < 6, "leased key outlived its 2 s TTL"
        time.sleep(0.1)
    assert time.monotonic() - started > 1  # it did live for (about) its TTL first


def test_etcd_watch_sees_a_put_without_a_type(etcd):
    client = etcd.client()
    later = threading.Timer(0.3, lambda: client.put("/fleet/w", "x"))
    later.start()
    try:
        event = client.watch_once("/fleet/w", timeout=5)
    finally:
        later.join()
    assert event["kv"]["value"] == b"x"
    assert event.get("type", "PUT") == "PUT"  # etcd's JSON gateway leaves PUT (0) out


def test_etcd_stop_fails_calls_and_restart_keeps_data(etcd):
    client = etcd.client(timeout=2)
    client.put("/fleet/kept", "yes")
    pid, port = etcd.pid, etcd.client_port

    # etcd shuts down cleanly on SIGTERM, then re-raises it on itself: exit status -15
    assert etcd.stop() == -signal.SIGTERM
    assert "shutting down" in etcd.log_path.read_text()
    assert_gone(pid)
    with pytest.raises(etcd3gw.exceptions.ConnectionFailedError):
        client.get("/fleet/kept")

    etcd.restart()
    assert etcd.client_port == port and etcd.pid != pid
    assert client.get("/fleet/kept") == [b"yes"]  # the same client reconnects to the same port


def test_etcd_kill_then_restart(etcd):
    client = etcd.client()
    client.put("/fleet/k", "v")
    pid = etcd.pid
    etcd.kill()
    assert_gone(pid)
    etcd.restart()
    assert client.get("/fleet/k") == [b"v"]  # a put that was acknowledged survives SIGKILL


def test_etcd_pause_times_out_calls_until_resumed(etcd):
    client = etcd.client(timeout=0.5)
    client.put("/fleet/p", "1")
    etcd.pause()
    try:
        with pytest.raises(etcd3gw.exceptions.ConnectionTimeoutError):
            client.get("/fleet/p")
    finally:
        etcd.resume()
    assert client.get("/fleet/p") == [b"1"]


def test_etcd_stop_leaves_no_process(tmp_path):
    server = Etcd().start(tmp_path / "etcd")
    pid = server.pid
    os.kill(pid, 0)  # running
    server.stop()
    assert_gone(pid)
    assert not server.running()


def test_etcd_start_failure_reports_the_log(tmp_path):
    first = Etcd().start(tmp_path / "one")
    try:
        second = Etcd()
        second.client_port = first.client_port  # taken: etcd exits at once
        with pytest.raises(RuntimeError, match="address already in use"):
            second.start(tmp_path / "two", timeout=10)
        assert not second.running()
    finally:
        first.stop()


def test_s3_put_and_list(s3):
    client = s3.client()
    assert [b["Name"] for b in client.list_buckets()["Buckets"]] == ["models"]
    client.put_object(Bucket="models", Key="m/1/model.onnx", Body=b"weights")
    listed = client.list_objects_v2(Bucket="models", Prefix="m/")
    assert [o["Key"] for o in listed["Contents"]] == ["m/1/model.onnx"]
    assert client.get_object(Bucket="models", Key="m/1/model.onnx")["Body"].read() == b"weights"


def test_s3_env_reaches_a_subprocess(s3):
    """A subprocess given only ``s3.env()`` (as a node would be) finds the server."""
    s3.client().put_object(Bucket="models", Key="k", Body=b"v")
    script = (
        "import boto3, json; c = boto3.client('s3');"
        "print(json.dumps([o['Key'] for o in c.list_objects_v2(Bucket='models')['Contents']]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | s3.env()
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["k"]
    assert os.environ.get("AWS_ENDPOINT_URL") != s3.endpoint  # nothing set in this process


def test_s3_reset_forgets_buckets(s3):
    s3.make_bucket("other")
    s3.reset()
    assert s3.client().list_buckets()["Buckets"] == []


def test_node_starts_restarts_on_same_ports_and_stops(tmp_path, processes):
    repo = tmp_path / "repo"
    write_version(repo / "m", 1, affine_model(1.0))
    node = processes.node("n1", ["--repository", str(repo), "--poll-interval", "0.2"])
    node.wait_live(30)
    node.wait_ready(30)
    assert httpx.get(f"{node.url}/v2/models/m/ready").status_code == 200
    first_pid, port = node.pid, node.http_port

    node.kill()
    assert_gone(first_pid)
    node.restart().wait_ready(30)
    assert node.http_port == port and node.pid != first_pid

    second_pid = node.pid
    assert processes.stop_all() == {"n1": 0}  # what teardown does: SIGTERM, clean exit
    assert_gone(second_pid)


def test_node_timeout_shows_the_log(tmp_path, processes):
    node = processes.node("bad", ["--repository", str(tmp_path / "repo"), "--no-such-flag"])
    with pytest.raises(AssertionError, match="no-such-flag"):
        node.wait_live(20)
