"""The trust chain and fail-closed configuration on a real server, hole by hole: each of these
was possible before, and each is refused now while the serving version keeps answering."""

from __future__ import annotations

import shutil

import httpx
import pytest

from baton.artifacts.publish import publish
from baton.artifacts.signing import generate_key_pair
from baton.dev.demo import affine_model, write_version

from .conftest import served_version, wait_for


def state(url: str, version: int, model: str = "m") -> dict:
    doc = httpx.get(f"{url}/admin/models/{model}").json()
    return next((v for v in doc["versions"] if v["version"] == version), {})


@pytest.fixture
def signed(tmp_path):
    """A repository whose versions are signed by `ci`, a server that requires signatures, and
    a staging area where new versions are published before they are moved in."""
    key, pub = generate_key_pair(tmp_path / "ci")
    model = tmp_path / "model.onnx"
    model.write_bytes(affine_model(1.0).SerializeToString())
    live, staging = tmp_path / "live", tmp_path / "staging"
    publish(model, live, "m", version=1, sign_key=key)
    args = ("--trusted-key", str(pub), "--require-signature")
    return live, staging, key, args


def move_in(staging, live, version: int) -> None:
    shutil.move(str(staging / "m" / str(version)), str(live / "m" / f".{version}.tmp"))
    (live / "m" / f".{version}.tmp").rename(live / "m" / str(version))


def test_code_named_by_an_unsigned_model_yaml_never_runs(server_factory, signed, tmp_path):
    live, staging, key, args = signed
    server = server_factory(live, args=args)
    marker = tmp_path / "pwned"
    (live / "m" / "model.yaml").write_text(
        'backend: python\npython: {handler: "os:system", '
        f'kwargs: {{command: "touch {marker}"}}}}\n'
    )  # an attacker who can write the repository, but not sign
    model = tmp_path / "v2.onnx"
    model.write_bytes(affine_model(2.0).SerializeToString())
    publish(model, staging, "m", version=2, sign_key=key)  # CI signs its own model.yaml
    move_in(staging, live, 2)
    v2 = wait_for(lambda: state(server.url, 2).get("state") == "FAILED" and state(server.url, 2))
    assert v2["reason"] == "unsigned_config" and "os:system" in v2["message"]
    assert not marker.exists()
    assert served_version(server.url) == "1"


def test_a_hidden_file_in_a_signed_version_is_refused(server_factory, signed, tmp_path):
    live, staging, key, args = signed
    server = server_factory(live, args=args)
    model = tmp_path / "v2.onnx"
    model.write_bytes(affine_model(2.0).SerializeToString())
    publish(model, staging, "m", version=2, sign_key=key)
    (staging / "m" / "2" / ".sitecustomize.py").write_text("print('rides along')\n")
    move_in(staging, live, 2)
    v2 = wait_for(lambda: state(server.url, 2).get("state") == "FAILED" and state(server.url, 2))
    assert v2["reason"] == "unexpected_file" and ".sitecustomize.py" in v2["message"]
    assert served_version(server.url) == "1"


def test_a_tampered_compile_cache_entry_is_discarded(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0, padding_floats=64))
    env = {"BATON_COMPILE_CACHE_KEY": str(tmp_path / "state" / "cache.key")}
    server = server_factory(root, env=env)
    assert served_version(server.url) == "1"
    assert server.stop() == 0
    entries = list((root / ".baton" / "compile-cache").glob("*.entry"))
    assert entries, "the first load stores its optimised graph"
    for entry in entries:  # replace the graph: what an attacker who can write the cache does
        data = bytearray(entry.read_bytes())
        data[-8] ^= 0xFF
        entry.write_bytes(bytes(data))
    restarted = server_factory(root, env=env)
    events = httpx.get(f"{restarted.url}/admin/events", params={"model": "m"}).json()
    warming = [e for e in events if e["state"] == "WARMING"]
    assert warming[-1]["data"]["compile_cache"] == "rejected"
    assert served_version(restarted.url) == "1"
    r = httpx.post(f"{restarted.url}/v2/models/m/infer",
                   json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                     "data": [1, 2, 3, 4]}]})  # fmt: skip
    assert r.json()["outputs"][0]["data"] == [2.0, 3.0, 4.0, 5.0]


def test_a_typo_in_a_canary_config_does_not_swap_all_traffic(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    config = root / "m" / "model.yaml"
    config.write_text("rollout: {mode: canary, steps: [10, 100], interval: 1h}\n")
    server = server_factory(root)
    config.write_text("rollout: {mode: canary, stepz: [10, 100], interval: 1h}\n")
    error = wait_for(lambda: httpx.get(f"{server.url}/admin/models/m").json()["config_error"])
    assert "stepz" in error
    write_version(root / "m", 2, affine_model(2.0))
    rollout = wait_for(lambda: httpx.get(f"{server.url}/admin/models/m/rollout").json()["rollout"])
    assert rollout["status"] == "RUNNING" and rollout["weight"] == 0.1  # the last valid canary
    answers = [served_version(server.url) for _ in range(100)]
    assert answers.count("2") <= 20


def test_a_restart_with_an_invalid_model_yaml_keeps_the_last_valid_settings(server_factory,
                                                                            tmp_path):  # fmt: skip
    root = tmp_path / "repo"
    for v in (1, 2):
        write_version(root / "m", v, affine_model(float(v)))
    (root / "m" / "model.yaml").write_text("version_policy: {latest: 2}\n")
    write_version(root / "fresh", 1, affine_model(1.0))
    (root / "fresh" / "model.yaml").write_text("version_policy: {latest: two}\n")
    server = server_factory(root)
    assert state(server.url, 1)["state"] == state(server.url, 2)["state"] == "SERVING"
    assert server.stop() == 0
    (root / "m" / "model.yaml").write_text("version_policy: {latest: 2\n")  # broken YAML
    restarted = server_factory(root)  # ready: a model never seen valid does not hold it back
    assert state(restarted.url, 1)["state"] == state(restarted.url, 2)["state"] == "SERVING"
    model = httpx.get(f"{restarted.url}/admin/models/m").json()
    assert model["config_error"] and model["version_policy"] == "latest 2"
    fresh = httpx.get(f"{restarted.url}/admin/models/fresh").json()
    assert "latest" in fresh["config_error"]
    assert [v["state"] for v in fresh["versions"]] == ["AVAILABLE"]  # loads nothing
    ready = httpx.get(f"{restarted.url}/v2/models/fresh/ready")
    assert ready.status_code == 400 and "no version serving" in ready.json()["error"]
    metrics = httpx.get(f"{restarted.url}/metrics").text
    assert 'baton_model_config_error{model="fresh"} 1.0' in metrics
