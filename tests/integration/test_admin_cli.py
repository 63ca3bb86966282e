"""Admin API and the `baton` CLI against a real server: versions, pin, rollback, labels,
events, rescan, OpenAPI, config errors, and graceful shutdown."""

from __future__ import annotations

import threading
import time

import httpx

from baton.dev.demo import affine_model, slow_model, write_version

from .conftest import baton_cli, served_version, wait_for


def cli(url: str, *args: str):
    return baton_cli("--url", url, *args)


def test_models_pin_rollback_unpin_via_cli(server_factory, repo):
    server = server_factory(repo)
    out = cli(server.url, "models")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["MODEL", "VERSION", "STATE", "INFLIGHT", "ROUTING", "LAST", "ERROR"]
    assert any(
        line.split()[:4] == ["m", "2", "SERVING", "0"] and "default" in line for line in lines
    )

    write_version(repo / "m", 3, affine_model(3.0))
    wait_for(lambda: served_version(server.url) == "3")

    out = cli(server.url, "rollback", "m")
    assert out.returncode == 0 and "back to version 2" in out.stdout
    wait_for(lambda: served_version(server.url) == "2")
    model = httpx.get(f"{server.url}/admin/models/m").json()
    assert model["pinned"] == 2 and model["default_version"] == 2
    wait_for(
        lambda: (
            {
                v["version"]: v["state"]
                for v in httpx.get(f"{server.url}/admin/models/m").json()["versions"]
            }[3]
            == "UNLOADED"
        )
    )

    assert cli(server.url, "pin", "m", "1").returncode == 0
    wait_for(lambda: served_version(server.url) == "1")
    assert cli(server.url, "unpin", "m").returncode == 0
    wait_for(lambda: served_version(server.url) == "3")

    bad = cli(server.url, "pin", "m", "42")
    assert bad.returncode != 0 and "404" in bad.stderr and "no complete version 42" in bad.stderr
    unreachable = cli("http://127.0.0.1:9", "models")
    assert unreachable.returncode != 0 and "cannot reach" in unreachable.stderr


def test_labels_events_rescan_openapi(server_factory, repo):
    server = server_factory(repo, poll_interval=30)  # only rescans bring news
    url = server.url
    r = httpx.put(f"{url}/admin/models/m/labels/stable", json={"version": 1})
    assert r.status_code == 200 and r.json()["model"]["labels"] == {"stable": 1}
    wait_for(lambda: httpx.get(f"{url}/v2/models/m/versions/stable/ready").status_code == 200)
    assert (
        httpx.put(f"{url}/admin/models/m/labels/stable", json={"version": "x"}).status_code == 400
    )
    assert httpx.put(f"{url}/admin/models/m/labels/7", json={"version": 1}).status_code == 409

    write_version(repo / "m", 3, affine_model(3.0))
    assert cli(url, "rescan").returncode == 0  # first look
    assert cli(url, "rescan").returncode == 0  # second look: stable, so offered
    wait_for(lambda: served_version(url) == "3")

    events = httpx.get(f"{url}/admin/events", params={"model": "m", "limit": 500}).json()
    kinds = [(e["kind"], e["version"], e["state"]) for e in events]
    assert ("state", 3, "SERVING") in kinds and ("label", 1, None) in kinds
    assert ("swap", 3, None) in kinds
    out = cli(url, "events", "--model", "m")
    assert out.returncode == 0 and "SERVING" in out.stdout

    spec = httpx.get(f"{url}/admin/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    assert {
        "/admin/models",
        "/admin/models/{model}/pin",
        "/admin/models/{model}/rollback",
        "/admin/events",
    } <= set(spec["paths"])
    assert "VersionBody" in spec["components"]["schemas"]
    assert httpx.get(f"{url}/admin/models/nope").status_code == 404
    assert httpx.post(f"{url}/admin/models/m/pin", content=b"{").status_code == 400


def test_failed_version_reason_is_visible_in_api_and_metrics(server_factory, repo):
    server = server_factory(repo)
    (repo / "m" / "3").mkdir()
    (repo / "m" / "3" / "model.onnx").write_bytes(b"this is not an onnx model")
    (repo / "m" / "model.yaml").write_text("version_policy: {latest: 0}\n")

    def failed():
        versions = httpx.get(f"{server.url}/admin/models/m").json()["versions"]
        return next((v for v in versions if v["version"] == 3 and v["state"] == "FAILED"), None)

    v3 = wait_for(failed)
    assert v3["reason"] == "load_error" and "onnxruntime could not load" in v3["message"]
    model = httpx.get(f"{server.url}/admin/models/m").json()
    assert "latest" in model["config_error"]
    assert served_version(server.url) == "2"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'baton_failed_loads_total{model="m",reason="load_error"} 1.0' in metrics
    assert "FAILED" in server.output()


def test_sigterm_finishes_in_flight_requests_and_exits_zero(server_factory, tmp_path):
    root = tmp_path / "slow-repo"
    write_version(root / "slow", 1, slow_model())
    server = server_factory(root)
    started = time.perf_counter()
    results = {}

    def call():
        body = {"inputs": [{"name": "n", "datatype": "INT64", "shape": [1], "data": [15000]}]}
        r = httpx.post(f"{server.url}/v2/models/slow/infer", json=body, timeout=60)
        results["response"] = r

    t = threading.Thread(target=call)
    t.start()
    wait_for(
        lambda: (
            'baton_inflight_requests{model="slow",version="1"} 1.0'
            in httpx.get(f"{server.url}/metrics").text
        ),
        interval=0.01,
    )
    assert server.stop() == 0
    t.join(30)
    r = results["response"]
    assert r.status_code == 200 and abs(r.json()["outputs"][0]["data"][0] - 1.0) < 1e-3
    assert time.perf_counter() - started < 30
    log = server.output()
    assert "DRAINING" in log and "UNLOADED" in log and "baton stopped" in log


def test_rollout_via_cli(server_factory, repo):
    server = server_factory(repo)
    assert cli(server.url, "pin", "m", "1").returncode == 0
    wait_for(lambda: served_version(server.url) == "1")
    out = cli(
        server.url, "rollout", "start", "m", "--to", "2", "--steps", "20,100", "--interval", "1m"
    )
    assert out.returncode == 0, out.stderr
    assert "RUNNING v1 → v2, step 1/2 (20% → 100%), candidate weight 20%" in out.stdout
    status = cli(server.url, "rollout", "status", "m")
    assert "RUNNING" in status.stdout and "VERSION" in status.stdout
    again = cli(server.url, "rollout", "start", "m", "--to", "2")
    assert again.returncode != 0 and "already has a rollout" in again.stderr
    aborted = cli(server.url, "rollout", "abort", "m")
    assert aborted.returncode == 0, aborted.stderr
    assert "m: rollout v1 → v2 aborted: v1 serves all traffic; v2 retired" in aborted.stdout
    assert httpx.get(f"{server.url}/admin/models/m").json()["default_version"] == 1
    bad = cli(server.url, "rollout", "start", "m", "--to", "2", "--steps", "50,20")
    assert bad.returncode != 0 and "400" in bad.stderr
