"""Bounded costs on a real server: an in-flight limit, metric labels clients cannot mint, and
5xx answers that carry a request id instead of exception text."""

from __future__ import annotations

import re
import threading

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from tritonclient.utils import InferenceServerException

from baton.dev.demo import slow_model, write_version

from .conftest import ZEROS, wait_for

FAILING_HANDLER = """
class Failing:
    def load(self, path):
        pass

    def predict(self, inputs):
        raise RuntimeError("cannot read /srv/secret/weights-7f3a.bin: corrupted")

    def unload(self):
        pass
"""
FAILING_YAML = """backend: python
python: {handler: "handler.py:Failing"}
inputs: [{name: x, datatype: FP32, shape: [-1, 4]}]
outputs: [{name: y, datatype: FP32, shape: [-1, 4]}]
warmup: {enabled: false}
"""


def test_requests_beyond_the_in_flight_limit_get_429(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "slow", 1, slow_model())
    server = server_factory(root, args=("--max-inflight", "2"))
    body = {"inputs": [{"name": "n", "datatype": "INT64", "shape": [1], "data": [15000]}]}
    answers: list[int] = []

    def call():
        r = httpx.post(f"{server.url}/v2/models/slow/infer", json=body, timeout=60)
        answers.append(r.status_code)
        if r.status_code == 429:
            assert "--max-inflight 2" in r.json()["error"]

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    held = 'baton_inflight_requests{model="slow",version="1"} 2.0'
    wait_for(lambda: held in httpx.get(f"{server.url}/metrics").text, timeout=30, interval=0.01)
    client = tgrpc.InferenceServerClient(server.grpc_hostport)
    n = tgrpc.InferInput("n", [1], "INT64")
    n.set_data_from_numpy(np.array([1], np.int64))
    with pytest.raises(InferenceServerException) as refused:  # both places held: gRPC too
        client.infer("slow", [n])
    assert "RESOURCE_EXHAUSTED" in str(refused.value.status())
    for t in threads:
        t.join(60)
    assert answers.count(200) >= 2 and set(answers) <= {200, 429}
    assert httpx.post(f"{server.url}/v2/models/slow/infer", json=body, timeout=60).is_success


def test_refused_requests_for_unknown_models_count_under_one_label(server_factory, repo):
    server = server_factory(repo)
    for i in range(50):
        r = httpx.post(f"{server.url}/v2/models/made-up-{i}/infer", json={"inputs": [ZEROS]})
        assert r.status_code == 404
    metrics = httpx.get(f"{server.url}/metrics").text
    rejected = re.findall(r'baton_rejected_requests_total\{model="([^"]*)"', metrics)
    assert set(rejected) == {"unknown"}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_5xx_names_a_request_id_and_no_internals(server_factory, tmp_path, protocol):
    root = tmp_path / "repo"
    (root / "bad" / "1").mkdir(parents=True)
    (root / "bad" / "1" / "handler.py").write_text(FAILING_HANDLER)
    (root / "bad" / "model.yaml").write_text(FAILING_YAML)
    server = server_factory(root)
    if protocol == "http":
        r = httpx.post(f"{server.url}/v2/models/bad/infer", json={"inputs": [ZEROS]})
        assert r.status_code == 500
        message = r.json()["error"]
    else:
        client = tgrpc.InferenceServerClient(server.grpc_hostport)
        x = tgrpc.InferInput("x", [1, 4], "FP32")
        x.set_data_from_numpy(np.zeros((1, 4), np.float32))
        with pytest.raises(InferenceServerException) as failed:
            client.infer("bad", [x])
        assert "INTERNAL" in str(failed.value.status())
        message = failed.value.message()
    assert "secret" not in message and "/srv" not in message and "Traceback" not in message
    request = re.search(r"request ([0-9a-f]{12})", message).group(1)
    log = server.output()
    assert f"request {request}" in log and "/srv/secret/weights-7f3a.bin" in log
