"""One behavioural suite for every installed backend, on a real server: signature and infer over
HTTP and gRPC, swap under load with zero failed requests, and memory given back after unloads.
Each backend serves the same model, y = x + offset on FP32[-1, 4], built by the test itself."""

from __future__ import annotations

import time

import httpx
import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from .backends import BACKENDS, build, expected, installed, reveal
from .conftest import wait_for
from .traffic import Traffic

PARAMS = [
    pytest.param(name, marks=pytest.mark.skipif(not installed(pkg), reason=f"{pkg} not installed"))
    for name, (_, pkg) in BACKENDS.items()
]
X = np.array([[0.5, -1.0, 2.0, 3.5]], np.float32)


def failed(url: str, version: int) -> dict | None:
    """The version's admin view once it is FAILED, else ``None``."""
    versions = httpx.get(f"{url}/admin/models/m").json()["versions"]
    return next((v for v in versions if v["version"] == version and v["state"] == "FAILED"), None)


def served(url: str) -> str:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0] * 4}]}
    return httpx.post(f"{url}/v2/models/m/infer", json=body, timeout=30).json()["model_version"]


@pytest.mark.parametrize("backend", PARAMS)
def test_signature_and_infer_over_http_and_grpc(backend, server_factory, tmp_path):
    model = tmp_path / "repo" / "m"
    build(backend, model, [(1, 1.0, {})])
    reveal(model, 1)
    server = server_factory(tmp_path / "repo")
    meta = httpx.get(f"{server.url}/v2/models/m").json()
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]
    http = httpclient.InferenceServerClient(server.hostport)
    inp = httpclient.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(X)
    np.testing.assert_allclose(http.infer("m", [inp]).as_numpy("y"), expected(X, 1.0))
    grpc = grpcclient.InferenceServerClient(server.grpc_hostport)
    ginp = grpcclient.InferInput("x", [1, 4], "FP32")
    ginp.set_data_from_numpy(X)
    np.testing.assert_allclose(grpc.infer("m", [ginp]).as_numpy("y"), expected(X, 1.0))
    assert grpc.get_model_metadata("m").platform == meta["platform"]


@pytest.mark.parametrize("backend", PARAMS)
def test_swap_under_load_loses_no_request(backend, server_factory, tmp_path):
    model = tmp_path / "repo" / "m"
    build(backend, model, [(v, float(v), {}) for v in (1, 2, 3)])
    reveal(model, 1)
    server = server_factory(tmp_path / "repo")
    with Traffic(server.url, value=0.0, clients=2) as traffic:
        for version in (2, 3):
            reveal(model, version)
            wait_for(lambda v=version: served(server.url) == str(v), timeout=60)
        time.sleep(0.3)
    assert traffic.failures == []
    for versions in traffic.per_client:
        assert [int(v) for v in versions] == sorted(int(v) for v in versions)
    assert {v for _, _, v in traffic.log} == {"1", "2", "3"}


@pytest.mark.parametrize("backend", PARAMS)
def test_memory_is_given_back_after_unloads(backend, server_factory, tmp_path):
    """Six swaps of a 40 MB model, after two to reach a steady state (frameworks initialise
    lazily on their first loads): the server ends within one model's size of where it was."""
    model = tmp_path / "repo" / "m"
    floats = 10 * 2**20  # 40 MB of weights per version
    build(backend, model, [(v, float(v), {"padding": floats}) for v in range(1, 10)])
    reveal(model, 1)
    server = server_factory(tmp_path / "repo")
    process = psutil.Process(server.process.pid)

    def unloaded(version: int) -> bool:
        versions = httpx.get(f"{server.url}/admin/models/m").json()["versions"]
        return any(v["version"] == version and v["state"] == "UNLOADED" for v in versions)

    baseline = 0
    for version in range(2, 10):
        reveal(model, version)
        wait_for(lambda v=version: served(server.url) == str(v), timeout=60)
        wait_for(lambda v=version: unloaded(v - 1), timeout=60)
        if version == 3:
            baseline = process.memory_info().rss
    final = process.memory_info().rss
    assert final - baseline < 40 * 2**20 + 30 * 2**20, (baseline / 2**20, final / 2**20)


@pytest.mark.skipif(not installed("torch"), reason="torch not installed")
def test_weights_for_another_task_or_shape_are_refused_while_the_old_version_serves(
    server_factory, tmp_path
):
    """The seed's case: a traffic-sign model's weights dropped into a defect-detection service."""
    model = tmp_path / "repo" / "m"
    traffic_signs = {"labels": ["stop", "yield", "speed-limit"]}
    build("torch_weights", model, [(1, 1.0, {}), (2, 2.0, traffic_signs), (3, 3.0, {"width": 8}),
                                   (4, 4.0, {})])  # fmt: skip
    reveal(model, 1)  # labels: crack, dent, scratch
    server = server_factory(tmp_path / "repo")

    reveal(model, 2)
    v2 = wait_for(lambda: failed(server.url, 2))
    assert v2["reason"] == "labels_changed" and "stop" in v2["message"]
    reveal(model, 3)
    v3 = wait_for(lambda: failed(server.url, 3))
    assert v3["reason"] == "incompatible_weights" and "offset" in v3["message"]
    assert served(server.url) == "1"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'baton_failed_loads_total{model="m",reason="labels_changed"} 1.0' in metrics
    reveal(model, 4)  # same labels and shapes: accepted
    wait_for(lambda: served(server.url) == "4")


def test_tensorrt_without_a_gpu_is_reported_unavailable(server_factory, tmp_path):
    """No GPU here: a TensorRT engine is refused with what it needs; the server runs on."""
    model = tmp_path / "repo" / "m"
    build("onnx", model, [(1, 1.0, {})])
    reveal(model, 1)
    server = server_factory(tmp_path / "repo")
    (model / ".pending-2").mkdir()
    (model / ".pending-2" / "model.engine").write_bytes(b"serialized engine")
    reveal(model, 2)

    v2 = wait_for(lambda: failed(server.url, 2))
    assert v2["reason"] == "backend_unavailable" and "baton[tensorrt]" in v2["message"]
    assert served(server.url) == "1"


@pytest.mark.skipif(not installed("tensorflow"), reason="tensorflow not installed")
def test_tf_serving_warmup_file_is_honoured(server_factory, tmp_path):
    """Version 1 warms up with the three requests of its TF Serving warm-up file; version 2's
    file holds a request of the wrong shape, which fails its warm-up: proof the file is run."""
    model = tmp_path / "repo" / "m"
    build("tensorflow", model, [(1, 1.0, {"warmup_shapes": [[1, 4], [2, 4], [8, 4]]}),
                                (2, 2.0, {"warmup_shapes": [[1, 3]]})])  # fmt: skip
    reveal(model, 1)
    server = server_factory(tmp_path / "repo")
    entries = httpx.get(f"{server.url}/admin/audit", params={"limit": 100}).json()["entries"]
    ready = next(e for e in entries if e["kind"] == "state" and e["state"] == "READY")
    assert ready["data"]["warmup_source"] == "model" and ready["data"]["warmup_runs"] >= 3
    reveal(model, 2)

    assert wait_for(lambda: failed(server.url, 2))["reason"] == "warmup_failed"
    assert served(server.url) == "1"
