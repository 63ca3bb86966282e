"""Every Open Inference Protocol HTTP endpoint, with httpx and with tritonclient.http (defaults,
so binary tensors), against a real server on a loopback port."""

from __future__ import annotations

import gzip

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from .conftest import start_server
from .protocol_models import NUMPY, TYPES, write_protocol_repository

LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = write_protocol_repository(tmp_path_factory.mktemp("repo"))
    s = start_server(
        repo, tmp_path_factory.mktemp("logs"), env={"BATON_MAX_REQUEST_BYTES": str(LIMIT)}
    )
    yield s
    assert s.stop() == 0, s.output()[-3000:]


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def tc(server):
    client = triton.InferenceServerClient(server.hostport)
    yield client
    client.close()


def infer_json(http, model, inputs, version=None, **extra):
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    return http.post(path, content=orjson.dumps({"inputs": inputs, **extra}))


X = {"name": "x", "datatype": "FP32", "shape": [2, 4], "data": [0, 1, 2, 3, 4, 5, 6, 7]}


# ---- health and metadata ----------------------------------------------------------------
def test_health(http, tc):
    assert http.get("/v2/health/live").status_code == 200
    assert http.get("/v2/health/ready").status_code == 200
    assert tc.is_server_live() and tc.is_server_ready()


def test_server_metadata(http, tc):
    meta = tc.get_server_metadata()
    assert meta["name"] == "baton" and "binary_tensor_data" in meta["extensions"]
    assert http.get("/v2").json() == meta


def test_model_metadata(http, tc):
    meta = tc.get_model_metadata("affine")
    assert meta["name"] == "affine" and meta["platform"] == "onnxruntime_onnx"
    assert meta["versions"] == ["1", "2"]  # 2 by policy, 1 kept loaded by its label
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]
    v1 = tc.get_model_metadata("affine", "1")
    assert v1["version"] == "1"
    assert http.get("/v2/models/affine/versions/stable").json()["version"] == "1"
    assert http.get("/v2/models/nope").status_code == 404
    assert http.get("/v2/models/affine/versions/9").status_code == 404


def test_model_ready(http, tc):
    assert tc.is_model_ready("affine") and tc.is_model_ready("affine", "2")
    assert not tc.is_model_ready("affine", "9")
    assert not tc.is_model_ready("nope")
    assert http.get("/v2/models/nope/ready").status_code == 404
    r = http.get("/v2/models/affine/versions/9/ready")
    assert r.status_code == 400 and "version 9 is not serving" in r.json()["error"]


# ---- inference ----------------------------------------------------------------------------
def test_infer_json_names_the_version_that_computed_it(http):
    r = infer_json(http, "affine", [X], id="req-1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_name"] == "affine" and body["model_version"] == "2"
    assert body["id"] == "req-1"
    assert body["outputs"][0]["data"] == [v + 2.0 for v in range(8)]
    assert body["outputs"][0]["shape"] == [2, 4]
    r1 = infer_json(http, "affine", [X], version="1").json()
    assert r1["model_version"] == "1" and r1["outputs"][0]["data"][0] == 1.0
    rs = infer_json(http, "affine", [X], version="stable").json()
    assert rs["model_version"] == "1"


def test_infer_tritonclient_binary_defaults(tc):
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    inp = triton.InferInput("x", [2, 4], "FP32")
    inp.set_data_from_numpy(x)  # binary_data=True by default
    result = tc.infer("affine", [inp])
    np.testing.assert_array_equal(result.as_numpy("y"), x + 2)
    assert result.get_response()["model_version"] == "2"
    result = tc.infer(
        "affine",
        [inp],
        model_version="1",
        outputs=[triton.InferRequestedOutput("y", binary_data=False)],
    )
    np.testing.assert_array_equal(result.as_numpy("y"), x + 1)


@pytest.mark.parametrize("binary", [True, False])
def test_every_datatype_round_trips(tc, binary):
    inputs, expected = [], {}
    for name, (_, values) in TYPES.items():
        array = np.array([v.encode() if name == "BYTES" else v for v in values], dtype=NUMPY[name])
        inp = triton.InferInput(f"in_{name}", [3], name)
        inp.set_data_from_numpy(array, binary_data=binary)
        inputs.append(inp)
        expected[f"out_{name}"] = array
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in expected]
    result = tc.infer("types", inputs, outputs=outputs)
    for name, array in expected.items():
        got = result.as_numpy(name)
        if array.dtype == object:
            assert [b.encode() if isinstance(b, str) else bytes(b) for b in got] == list(array)
        else:
            assert got.dtype == array.dtype, name
            np.testing.assert_array_equal(got, array)


def test_infer_gzip_request_body(http):
    body = gzip.compress(orjson.dumps({"inputs": [X]}))
    r = http.post("/v2/models/affine/infer", content=body, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200 and r.json()["outputs"][0]["data"][0] == 2.0


# ---- bad input: clear 4xx, and the server keeps serving ----------------------------------
BAD = [
    ("malformed JSON", "affine", None, b'{"inputs": [', 400, "not valid JSON"),
    ("unknown model", "nope", None, orjson.dumps({"inputs": [X]}), 404, "unknown model"),
    ("unknown version", "affine", "9", orjson.dumps({"inputs": [X]}), 404, "version 9"),
    ("unknown label", "affine", "canary", orjson.dumps({"inputs": [X]}), 404, "canary"),
    (
        "wrong dtype",
        "affine",
        None,
        orjson.dumps({"inputs": [{**X, "datatype": "INT32", "data": list(range(8))}]}),
        400,
        "must be FP32, got INT32",
    ),
    (
        "wrong shape",
        "affine",
        None,
        orjson.dumps({"inputs": [{**X, "shape": [4, 2]}]}),
        400,
        "must have shape [-1, 4]",
    ),
    (
        "wrong size",
        "affine",
        None,
        orjson.dumps({"inputs": [{**X, "data": [1, 2, 3]}]}),
        400,
        "needs 8 elements, data has 3",
    ),
    (
        "unknown input",
        "affine",
        None,
        orjson.dumps({"inputs": [{**X, "name": "q"}]}),
        400,
        "unexpected input 'q'",
    ),
    (
        "unknown output",
        "affine",
        None,
        orjson.dumps({"inputs": [X], "outputs": [{"name": "z"}]}),
        400,
        "unknown output",
    ),
    (
        "strings as numbers",
        "affine",
        None,
        orjson.dumps({"inputs": [{**X, "data": ["a"] * 8}]}),
        400,
        "must hold numbers",
    ),
]


@pytest.mark.parametrize(
    ("what", "model", "version", "body", "status", "message"), BAD, ids=[b[0] for b in BAD]
)
def test_bad_requests_get_clear_4xx(http, what, model, version, body, status, message):
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    r = http.post(path, content=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert infer_json(http, "affine", [X]).status_code == 200


def test_binary_length_header_errors(http):
    r = http.post(
        "/v2/models/affine/infer", content=b"{}", headers={"Inference-Header-Content-Length": "50"}
    )
    assert r.status_code == 400 and "outside" in r.json()["error"]
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [2, 4],
                    "parameters": {"binary_data_size": 32},
                }
            ]
        }
    )
    r = http.post(
        "/v2/models/affine/infer",
        content=header + b"\0" * 16,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 400 and "does not fit" in r.json()["error"]


def test_oversized_body_is_refused(http):
    big = {"name": "x", "datatype": "FP32", "shape": [LIMIT // 8, 4], "data": [1.5] * (LIMIT // 2)}
    r = infer_json(http, "affine", [big])
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert infer_json(http, "affine", [X]).status_code == 200


def test_tritonclient_sees_errors(tc):
    inp = triton.InferInput("x", [2, 5], "FP32")
    inp.set_data_from_numpy(np.zeros((2, 5), np.float32))
    with pytest.raises(InferenceServerException, match=r"must have shape"):
        tc.infer("affine", [inp])
    with pytest.raises(InferenceServerException, match="unknown model"):
        tc.infer("nope", [inp])


def test_unknown_route_and_method(http):
    r = http.get("/v2/nothing/here")
    assert r.status_code == 404 and "error" in r.json()
    assert http.get("/v2/models/affine/infer").status_code == 405


# ---- model repository extension -------------------------------------------------------------
def test_repository_index_load_unload(http, tc):
    index = tc.get_model_repository_index()
    rows = {(r["name"], r["version"]): r["state"] for r in index}
    assert rows[("affine", "2")] == "SERVING" and rows[("types", "1")] == "SERVING"
    tc.unload_model("spare")
    assert not tc.is_model_ready("spare")
    r = infer_json(http, "spare", [X])
    assert r.status_code in (404, 503)
    ready = http.post("/v2/repository/index", json={"ready": True}).json()
    assert all(row["state"] == "SERVING" for row in ready)
    assert ("spare", "1") not in {(row["name"], row["version"]) for row in ready}
    tc.load_model("spare")
    assert tc.is_model_ready("spare")
    assert infer_json(http, "spare", [X]).json()["outputs"][0]["data"][0] == 7.0
    with pytest.raises(InferenceServerException, match="not in the model repository"):
        tc.load_model("does-not-exist")


# ---- metrics ----------------------------------------------------------------------------------
def test_metrics(http):
    infer_json(http, "affine", [X])
    text = http.get("/metrics").text
    for needle in (
        'baton_requests_total{model="affine",outcome="ok",version="2"}',
        'baton_request_duration_seconds_bucket{le="0.001",model="affine",version="2"}',
        'baton_inflight_requests{model="affine",version="2"} 0.0',
        'baton_version_state{model="affine",state="SERVING",version="2"} 1.0',
        'baton_swaps_total{model="affine"}',
        "baton_load_duration_seconds_count",
        "baton_warmup_duration_seconds_count",
        "process_resident_memory_bytes",
        'baton_rejected_requests_total{model="affine",status="400"}',
    ):
        assert needle in text, needle
