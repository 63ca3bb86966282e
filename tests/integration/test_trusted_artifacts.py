"""Trusted artifacts on a real server: every kind of bad version is refused with its reason in
the admin API and the metrics while the old version keeps serving, and ten versions published
under load (some signed) are all served, in order, with no failed request."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import onnx
import pytest

from baton.artifacts.manifest import MANIFEST
from baton.artifacts.publish import publish
from baton.artifacts.signing import generate_key_pair
from baton.dev.demo import affine_model, write_version
from baton.dev.testing import audit_entries

from .conftest import wait_for
from .traffic import Traffic

X = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}]}


def model_file(directory: Path, offset: float) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"affine-{offset:g}.onnx"
    onnx.save(affine_model(offset), str(path))
    return path


def served(url: str) -> str:
    return httpx.post(f"{url}/v2/models/m/infer", json=X).json()["model_version"]


def version_state(url: str, version: int) -> dict | None:
    versions = httpx.get(f"{url}/admin/models/m").json()["versions"]
    return next((v for v in versions if v["version"] == version), None)


@pytest.fixture
def keys(tmp_path):
    (tmp_path / "keys").mkdir()
    return {name: generate_key_pair(tmp_path / "keys" / name) for name in ("ci", "other")}


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def paste_signature(version_dir: Path, signed_dir: Path) -> None:
    doc = json.loads((version_dir / MANIFEST).read_text())
    doc["signatures"] = json.loads((signed_dir / MANIFEST).read_text())["signatures"]
    (version_dir / MANIFEST).write_text(json.dumps(doc))


def test_bad_versions_are_refused_with_reasons_and_the_old_one_keeps_serving(
    server_factory, tmp_path, keys
):
    repo, staging = tmp_path / "repo", tmp_path / "staging"
    source = model_file(tmp_path / "models", 1.0)
    publish(source, repo, "m", sign_key=keys["ci"][0])
    server = server_factory(repo, args=("--trusted-key", str(keys["ci"][1]), "--require-signature"))
    assert served(server.url) == "1"
    signed_elsewhere = publish(source, staging, "signed", sign_key=keys["ci"][0])
    cases = [
        ("unsigned", lambda d: None, {}),
        ("untrusted_key", lambda d: None, {"sign_key": keys["other"][0]}),
        ("bad_signature", lambda d: paste_signature(d, signed_elsewhere), {}),
        ("hash_mismatch", lambda d: flip_byte(d / "model.onnx"), {"sign_key": keys["ci"][0]}),
        ("size_mismatch", lambda d: (d / "model.onnx").write_bytes(b"trunc"),
         {"sign_key": keys["ci"][0]}),
        # the model's only file gone: a manifest without its files
        ("missing_file", lambda d: (d / "model.onnx").unlink(), {"sign_key": keys["ci"][0]}),
        ("unexpected_file", lambda d: (d / "run.sh").write_text("rm -rf /"),
         {"sign_key": keys["ci"][0]}),
    ]  # fmt: skip
    publish(source, staging, "m", version=30, sign_key=keys["ci"][0])  # a base the server lacks
    shutil.copytree(repo / "m" / "1", staging / "m" / "1")  # the served version 1, as a base
    cases += [
        ("delta_base_missing", lambda d: None, {"sign_key": keys["ci"][0], "delta_from": 30}),
        ("delta_base_altered", lambda d: flip_byte(repo / "m" / "1" / "model.onnx"),
         {"sign_key": keys["ci"][0], "delta_from": 1}),  # version 1 altered on disk
    ]  # fmt: skip
    for number, (expected, tamper, options) in enumerate(cases, start=2):
        version = publish(source, staging, "m", version=number, **options)
        tamper(version)
        os.replace(version, repo / "m" / str(number))  # appears in the served repo at once
        state = wait_for(lambda n=number: (v := version_state(server.url, n)) and
                         v["state"] == "FAILED" and v)  # fmt: skip
        assert state["reason"] == expected, state
        assert served(server.url) == "1"
    metrics = httpx.get(f"{server.url}/metrics").text
    for expected in {reason for reason, _, _ in cases}:
        count = sum(reason == expected for reason, _, _ in cases)
        assert f'baton_failed_loads_total{{model="m",reason="{expected}"}} {count}.0' in metrics
    shutil.copytree(signed_elsewhere, repo / "m" / "20")  # a good one still goes through
    wait_for(lambda: served(server.url) == "20")


def test_require_manifest_per_model(server_factory, tmp_path):
    repo = tmp_path / "repo"
    publish(model_file(tmp_path / "models", 1.0), repo, "m")
    (repo / "m" / "model.yaml").write_text("require_manifest: true\n")
    server = server_factory(repo)
    write_version(repo / "m", 2, affine_model(2.0))  # no manifest
    state = wait_for(lambda: (v := version_state(server.url, 2)) and v["state"] == "FAILED" and v)
    assert state["reason"] == "missing_manifest" and served(server.url) == "1"
    publish(model_file(tmp_path / "models", 3.0), repo, "m")
    wait_for(lambda: served(server.url) == "3")


def test_ten_versions_published_under_load_are_served_in_order(server_factory, tmp_path, keys):
    """Versions 2-11: every other one signed, every third one a delta from the one before."""
    repo = tmp_path / "repo"
    publish(model_file(tmp_path / "models", 1.0), repo, "m", sign_key=keys["ci"][0])
    server = server_factory(repo, args=("--trusted-key", str(keys["ci"][1])))
    with Traffic(server.url, value=0.0, clients=2) as traffic:
        for version in range(2, 12):
            publish(
                model_file(tmp_path / "models", float(version)), repo, "m",
                sign_key=keys["ci"][0] if version % 2 else None,
                delta_from=version - 1 if version % 3 == 0 else None,
            )  # fmt: skip
            wait_for(lambda v=version: served(server.url) == str(v))
    assert traffic.failures == []
    entries = audit_entries(server.url)
    swaps = [e["version"] for e in entries if e["kind"] == "swap" and e["version"] is not None]
    assert swaps == list(range(1, 12))
    for versions in traffic.per_client:  # each client only ever moved forward
        seen = [int(v) for v in versions]
        assert seen == sorted(seen)
    assert {int(v) for _, _, v in traffic.log} == set(range(1, 12))
    loaded = [e for e in entries if e["kind"] == "state" and e["state"] == "LOADING"]
    signed = {e["version"] for e in loaded if e["data"].get("signed_by")}
    assert signed == {1, 3, 5, 7, 9, 11}
    assert {e["version"] for e in loaded if e["data"].get("delta")} == {3, 6, 9}
    warming = [e for e in entries if e["kind"] == "state" and e["state"] == "WARMING"]
    cache = [e["data"]["compile_cache"] for e in warming]  # same graph, new weights: reused
    # Version 1 (scale 1 = offset 1) had its two equal weights merged by ORT, so its entry
    # serves only itself; version 2's serves every later one.
    assert cache == ["miss", "miss"] + ["hit"] * 9, cache
