"""Every gRPC RPC Baton serves, with tritonclient.grpc (raw tensors) and with a plain grpcio stub
built from tritonclient's published proto (typed contents), against a real server."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from baton.dev.demo import affine_model, identity_model, write_version

from .conftest import start_server
from .protocol_models import NUMPY, TYPES, write_protocol_repository


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = write_protocol_repository(tmp_path_factory.mktemp("repo"))
    typed = {datatype: TYPES[datatype][0] for datatype, _, _ in TYPED}
    write_version(repo / "typed", 1, identity_model(typed))  # FP16 has no typed field
    write_version(repo / "text", 1, identity_model({"s": TYPES["BYTES"][0]}))
    s = start_server(
        repo, tmp_path_factory.mktemp("logs"), env={"BATON_MAX_REQUEST_BYTES": str(1024 * 1024)}
    )
    yield s
    assert s.stop() == 0, s.output()[-3000:]


@pytest.fixture
def tc(server):
    client = triton.InferenceServerClient(server.grpc_hostport)
    yield client
    client.close()


@pytest.fixture
def stub(server):
    with grpc.insecure_channel(server.grpc_hostport) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def x_input(x: np.ndarray, name: str = "x", datatype: str = "FP32") -> triton.InferInput:
    inp = triton.InferInput(name, list(x.shape), datatype)
    inp.set_data_from_numpy(x)
    return inp


X = np.arange(8, dtype=np.float32).reshape(2, 4)


def test_health_and_server_metadata(tc):
    assert tc.is_server_live() and tc.is_server_ready()
    meta = tc.get_server_metadata(as_json=True)
    assert meta["name"] == "baton" and "model_repository" in meta["extensions"]


def test_model_metadata_and_ready(tc):
    meta = tc.get_model_metadata("affine", as_json=True)
    assert meta["versions"] == ["1", "2"] and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "4"]}]
    assert tc.get_model_metadata("affine", "stable", as_json=True)["name"] == "affine"
    assert tc.is_model_ready("affine") and tc.is_model_ready("affine", "1")
    assert not tc.is_model_ready("affine", "9")
    with pytest.raises(InferenceServerException, match="unknown model") as err:
        tc.is_model_ready("nope")
    assert err.value.status() == "StatusCode.NOT_FOUND"


def test_infer_raw_names_the_version(tc):
    result = tc.infer("affine", [x_input(X)])
    np.testing.assert_array_equal(result.as_numpy("y"), X + 2)
    assert result.get_response().model_version == "2"
    result = tc.infer("affine", [x_input(X)], model_version="stable", request_id="r7")
    np.testing.assert_array_equal(result.as_numpy("y"), X + 1)
    response = result.get_response()
    assert response.model_version == "1" and response.id == "r7"


def test_every_datatype_round_trips_raw(tc):
    inputs, expected = [], {}
    for name, (_, values) in TYPES.items():
        array = np.array([v.encode() if name == "BYTES" else v for v in values], dtype=NUMPY[name])
        inputs.append(x_input(array, f"in_{name}", name))
        expected[f"out_{name}"] = array
    result = tc.infer("types", inputs)
    for name, array in expected.items():
        got = result.as_numpy(name)
        if array.dtype == object:
            assert list(got) == list(array)
        else:
            assert got.dtype == array.dtype, name
            np.testing.assert_array_equal(got, array)


TYPED = [  # datatype, contents field, values
    ("BOOL", "bool_contents", [True, False]),
    ("INT8", "int_contents", [-128, 127]),
    ("INT16", "int_contents", [-32768, 32767]),
    ("INT32", "int_contents", [-(2**31), 2**31 - 1]),
    ("INT64", "int64_contents", [-(2**63), 2**63 - 1]),
    ("UINT8", "uint_contents", [0, 255]),
    ("UINT16", "uint_contents", [0, 65535]),
    ("UINT32", "uint_contents", [0, 2**32 - 1]),
    ("UINT64", "uint64_contents", [0, 2**64 - 1]),
    ("FP32", "fp32_contents", [-1.5, 2.5]),
    ("FP64", "fp64_contents", [-1.5, 1e300]),
    ("BYTES", "bytes_contents", [b"a", "é\x00".encode()]),
]


def test_every_datatype_as_typed_contents(stub):
    request = service_pb2.ModelInferRequest(model_name="typed")
    for datatype, field, values in TYPED:
        tensor = request.inputs.add(name=f"in_{datatype}", datatype=datatype, shape=[2])
        getattr(tensor.contents, field).extend(values)
    response = stub.ModelInfer(request)
    assert response.model_version == "1"
    outputs = {
        o.name: (o, raw)
        for o, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }
    for datatype, _, values in TYPED:
        out, raw = outputs[f"out_{datatype}"]
        assert out.datatype == datatype and list(out.shape) == [2]
        if datatype == "BYTES":
            assert raw == b"".join(len(v).to_bytes(4, "little") + v for v in values)
        else:
            np.testing.assert_array_equal(np.frombuffer(raw, NUMPY[datatype]), values)


def typed(name, datatype, shape, field, values):
    def build(request):
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        getattr(tensor.contents, field).extend(values)

    return build


def raw(name, datatype, shape, data):
    def build(request):
        request.inputs.add(name=name, datatype=datatype, shape=shape)
        request.raw_input_contents.append(data)

    return build


@pytest.mark.parametrize(
    ("model", "build", "message"),
    [
        (
            "affine",
            typed("x", "INT32", [2, 4], "int_contents", range(8)),
            "must be FP32, got INT32",
        ),
        ("affine", typed("x", "FP32", [4, 2], "fp32_contents", range(8)), "must have shape"),
        ("affine", typed("x", "FP32", [2, 4], "fp32_contents", range(3)), "needs 8 elements"),
        ("affine", typed("x", "FP16", [2, 4], "fp32_contents", []), "raw_input_contents"),
        ("affine", typed("x", "FP32", [2, 4], "int_contents", range(8)), "fp32_contents has 0"),
        ("affine", raw("x", "FP32", [2, 4], b"\0" * 31), "needs 32 bytes"),
        ("affine", lambda request: None, "no inputs"),
        ("typed", typed("in_INT8", "INT8", [1], "int_contents", [300]), "out of range for INT8"),
        ("text", raw("in_s", "BYTES", [1], b"\x02\x00\x00\x00\xff\xfe"), "not UTF-8"),
    ],
)
def test_bad_requests_get_invalid_argument(stub, model, build, message):
    request = service_pb2.ModelInferRequest(model_name=model)
    build(request)
    with pytest.raises(grpc.RpcError) as err:
        stub.ModelInfer(request)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()


def test_unknown_model_and_version(tc):
    for model, version in (("nope", ""), ("affine", "9"), ("affine", "canary")):
        with pytest.raises(InferenceServerException) as err:
            tc.infer(model, [x_input(X)], model_version=version)
        assert err.value.status() == "StatusCode.NOT_FOUND"


def test_unsupported_rpcs_are_unimplemented_not_hanging(tc):
    started = time.perf_counter()
    for call in (
        lambda: tc.get_model_config("affine"),
        lambda: tc.get_inference_statistics("affine"),
        lambda: tc.get_system_shared_memory_status(),
    ):
        with pytest.raises(InferenceServerException) as err:
            call()
        assert err.value.status() == "StatusCode.UNIMPLEMENTED"
    assert time.perf_counter() - started < 5


def test_oversized_request_is_refused(tc):
    big = np.zeros((300_000, 4), np.float32)  # 4.8 MB > the 1 MiB limit
    with pytest.raises(InferenceServerException) as err:
        tc.infer("affine", [x_input(big)])
    assert err.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert tc.infer("affine", [x_input(X)]).as_numpy("y") is not None


def test_repository_rpcs(tc):
    index = tc.get_model_repository_index(as_json=True)["models"]
    assert {"name": "types", "version": "1", "state": "SERVING"} in index
    tc.unload_model("spare")
    assert not tc.is_model_ready("spare")
    tc.load_model("spare")
    assert tc.is_model_ready("spare")
    result = tc.infer("spare", [x_input(X)])
    np.testing.assert_array_equal(result.as_numpy("y"), X + 7)
    with pytest.raises(InferenceServerException, match="not in the model repository"):
        tc.load_model("does-not-exist")


def test_infer_over_grpc_during_a_swap(server, tc):
    """Clients keep calling over gRPC while versions 3..6 are published: nothing fails, and each
    answer matches the version that says it computed it."""
    stop, failures, seen = threading.Event(), [], {}

    def client():
        local = triton.InferenceServerClient(server.grpc_hostport)
        try:
            while not stop.is_set():
                try:
                    result = local.infer("affine", [x_input(X)])
                except InferenceServerException as exc:
                    failures.append(str(exc))
                    continue
                v = result.get_response().model_version
                if not np.array_equal(result.as_numpy("y"), X + float(v)):
                    failures.append(f"version {v} gave a wrong answer")
                seen[v] = seen.get(v, 0) + 1
        finally:
            local.close()

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for v in range(3, 7):
            write_version(server.repository / "affine", v, affine_model(float(v)))
            time.sleep(0.8)
        deadline = time.monotonic() + 20
        while seen.get("6", 0) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert failures == []
    assert seen.get("6", 0) >= 10 and len(seen) >= 3, seen
