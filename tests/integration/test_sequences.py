"""Stateful sequences (Triton's sequence protocol) end to end: tritonclient.http, tritonclient.grpc
and gRPC streaming against one real server serving a running-sum model.

Model ``acc`` is :func:`baton.dev.demo.running_sum_model` published as version 3 (constant 3), so
after steps ``x1 .. xn`` of a sequence the answer is exactly ``3 * (x1 + ... + xn)`` (small whole
numbers: exact in FP32). Its model.yaml declares the hidden state ``h_in -> h_out``, a 1 s idle
timeout and at most 3 live sequences; ``plain`` is a stateless demo model.
"""

from __future__ import annotations

import itertools
import queue
import re
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from baton.dev.demo import affine_model, write_version
from baton.dev.sequence_traffic import write_sequence_version

from .conftest import baton_cli, start_server, wait_for

VERSION = 3  # the running-sum constant: y = VERSION * (sum of the sequence's x so far)
MAX_SEQUENCES = 3
SEQUENCE_YAML = """\
sequence:
  state: [{input: h_in, output: h_out, dtype: FP32, shape: [64]}]
  idle_timeout: 1s
  max_sequences: 3
"""

ids = itertools.count(1000)  # every test uses fresh ids (ended ids are remembered by the server)


def fresh_id() -> int:
    return next(ids)


def write_repository(root):
    write_sequence_version(root / "acc", VERSION)
    (root / "acc" / "model.yaml").write_text(SEQUENCE_YAML)
    # the same with a long idle timeout, for checks slower than 1 s (the baton CLI)
    write_sequence_version(root / "patient", VERSION)
    (root / "patient" / "model.yaml").write_text(SEQUENCE_YAML.replace("1s", "60s"))
    write_version(root / "plain", 1, affine_model(1.0))
    # declares a state the model does not hold: its only version FAILS (bad_sequence_config)
    write_sequence_version(root / "broken", 1)
    (root / "broken" / "model.yaml").write_text(SEQUENCE_YAML.replace("[64]", "[32]"))
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = write_repository(tmp_path_factory.mktemp("repo"))
    s = start_server(repo, tmp_path_factory.mktemp("logs"))
    yield s
    for client in _web.values():
        client.close()
    _web.clear()
    assert s.stop() == 0, s.output()[-3000:]


_web: dict[str, httpx.Client] = {}


def web(url: str) -> httpx.Client:
    """A kept-alive httpx client for the server at ``url`` (fresh connections cost more than
    the requests here)."""
    if url not in _web:
        _web[url] = httpx.Client(base_url=url, timeout=30)
    return _web[url]


def live(url: str, model: str = "acc") -> dict[int, int | None]:
    """The admin API's live-sequence count for each version of ``model``."""
    r = web(url).get(f"/admin/models/{model}")
    assert r.status_code == 200, r.text
    return {v["version"]: v["sequences"] for v in r.json()["versions"]}


@pytest.fixture(autouse=True)
def no_sequences_left(server):
    """Every test starts with no live sequence and must end (or idle out) all it started."""
    wait_for(lambda: live(server.url) == {VERSION: 0}, 5, "no live sequences before the test")
    yield
    assert live(server.url) == {VERSION: 0}


# ---- one client interface over the three transports ---------------------------------------


class Client:
    """``step()`` sends one request of a sequence and returns ``(y, version, output names)``,
    raising tritonclient's InferenceServerException for an error answer."""

    kind: str

    def step(self, sequence_id, x: float, *, start=False, end=False, model="acc", **kw):
        raise NotImplementedError

    def close(self) -> None:
        pass

    def status(self, http: int, grpc_code: str) -> str | None:
        """The status an error carries on this transport (a stream's errors carry none)."""
        return {"http": str(http), "grpc": f"StatusCode.{grpc_code}", "stream": None}[self.kind]


def x_input(module, x: float, width: int = 1, batch: int = 1):
    inp = module.InferInput("x", [batch, width], "FP32")
    inp.set_data_from_numpy(np.full((batch, width), x, np.float32))
    return inp


class HttpClient(Client):
    kind = "http"

    def __init__(self, server):
        self.tc = httpclient.InferenceServerClient(server.hostport)

    def step(self, sequence_id, x, *, start=False, end=False, model="acc", **kw):
        inputs = [x_input(httpclient, x, kw.pop("width", 1), kw.pop("batch", 1))]
        result = self.tc.infer(
            model, inputs, sequence_id=sequence_id, sequence_start=start, sequence_end=end, **kw
        )
        response = result.get_response()
        names = [o["name"] for o in response["outputs"]]
        return result.as_numpy(names[0]).tolist(), response["model_version"], names

    def close(self):
        self.tc.close()


def grpc_answer(result):
    response = result.get_response()
    names = [o.name for o in response.outputs]
    return result.as_numpy(names[0]).tolist(), response.model_version, names


class GrpcClient(Client):
    kind = "grpc"

    def __init__(self, server):
        self.tc = grpcclient.InferenceServerClient(server.grpc_hostport)

    def step(self, sequence_id, x, *, start=False, end=False, model="acc", **kw):
        inputs = [x_input(grpcclient, x, kw.pop("width", 1), kw.pop("batch", 1))]
        result = self.tc.infer(
            model, inputs, sequence_id=sequence_id, sequence_start=start, sequence_end=end, **kw
        )
        return grpc_answer(result)

    def close(self):
        self.tc.close()


class StreamClient(Client):
    """One ModelStreamInfer stream for the whole test: every step goes down it."""

    kind = "stream"

    def __init__(self, server):
        self.tc = grpcclient.InferenceServerClient(server.grpc_hostport)
        self.answers: queue.Queue = queue.Queue()
        self.tc.start_stream(callback=lambda result, error: self.answers.put((result, error)))

    def send(self, sequence_id, x, *, start=False, end=False, model="acc", width=1):
        self.tc.async_stream_infer(
            model,
            [x_input(grpcclient, x, width)],
            sequence_id=sequence_id,
            sequence_start=start,
            sequence_end=end,
        )

    def receive(self):
        result, error = self.answers.get(timeout=15)
        if error is not None:
            raise error
        return grpc_answer(result)

    def step(self, sequence_id, x, *, start=False, end=False, model="acc", **kw):
        self.send(sequence_id, x, start=start, end=end, model=model, **kw)
        return self.receive()

    def close(self):
        self.tc.stop_stream()
        self.tc.close()
        assert self.answers.empty(), "the stream answered more than it was asked"


CLIENTS = {"http": HttpClient, "grpc": GrpcClient, "stream": StreamClient}


@pytest.fixture(params=list(CLIENTS))
def client(request, server):
    c = CLIENTS[request.param](server)
    yield c
    c.close()


@pytest.fixture(params=["http", "grpc"])
def unary(request, server):
    c = CLIENTS[request.param](server)
    yield c
    c.close()


def run_sequence(client, sequence_id, xs, *, end=True):
    """Send the whole sequence ``xs``; every answer must be VERSION * (running sum)."""
    total = 0.0
    for i, x in enumerate(xs):
        total += x
        got = client.step(sequence_id, x, start=i == 0, end=end and i == len(xs) - 1)
        assert got == ([[VERSION * total]], str(VERSION), ["y"]), (sequence_id, i, x)


def refused(client, fragment, http, grpc_code, sequence_id, x=1.0, **kwargs) -> str:
    """The request fails with ``fragment`` in its message and the transport's status."""
    with pytest.raises(InferenceServerException) as err:
        client.step(sequence_id, x, **kwargs)
    assert fragment in err.value.message(), err.value.message()
    assert err.value.status() == client.status(http, grpc_code), err.value.message()
    return err.value.message()


# ---- start / step / end --------------------------------------------------------------------


def test_integer_id_sequence_matches_ground_truth(client, server):
    sid = fresh_id()
    run_sequence(client, sid, [1.0, 2.0, 5.0], end=False)
    assert live(server.url) == {VERSION: 1}
    # the END step still answers, from the whole history
    assert client.step(sid, 4.0, end=True) == ([[VERSION * 12.0]], "3", ["y"])
    assert live(server.url) == {VERSION: 0}
    # the same id starts again from the initial state
    run_sequence(client, sid, [7.0, 1.0])


def test_string_id_sequence_matches_ground_truth(client, server):
    sid = f"session-{fresh_id()}-é"
    run_sequence(client, sid, [2.0, 3.0, 4.0, 1.0], end=False)
    assert live(server.url) == {VERSION: 1}
    assert client.step(sid, 10.0, end=True) == ([[VERSION * 20.0]], "3", ["y"])
    # an integer id with the same digits is another sequence
    digits = fresh_id()
    assert client.step(str(digits), 1.0, start=True) == ([[VERSION * 1.0]], "3", ["y"])
    assert client.step(digits, 5.0, start=True) == ([[VERSION * 5.0]], "3", ["y"])
    assert live(server.url) == {VERSION: 2}
    assert client.step(str(digits), 1.0, end=True) == ([[VERSION * 2.0]], "3", ["y"])
    assert client.step(digits, 1.0, end=True) == ([[VERSION * 6.0]], "3", ["y"])


def test_start_and_end_in_one_request(client):
    sid = fresh_id()
    assert client.step(sid, 6.0, start=True, end=True) == ([[VERSION * 6.0]], "3", ["y"])
    refused(client, "ended (sequence_end)", 400, "INVALID_ARGUMENT", sid)


def test_interleaved_sequences_keep_separate_state(client, server):
    a, b = fresh_id(), f"b-{fresh_id()}"
    sums = {a: 0.0, b: 0.0}
    plan = [
        (a, 1.0, True, False),
        (b, 10.0, True, False),
        (a, 2.0, False, False),
        (b, 20.0, False, False),
        (b, 30.0, False, False),
        (a, 3.0, False, False),
    ]
    for sid, x, start, end in plan:
        sums[sid] += x
        assert client.step(sid, x, start=start, end=end) == ([[VERSION * sums[sid]]], "3", ["y"])
    assert live(server.url) == {VERSION: 2}
    assert client.step(b, 40.0, end=True) == ([[VERSION * 100.0]], "3", ["y"])
    assert live(server.url) == {VERSION: 1}
    assert client.step(a, 4.0, end=True) == ([[VERSION * 10.0]], "3", ["y"])


@pytest.mark.parametrize("string_id", [False, True])
def test_one_sequence_across_transports(server, string_id):
    """The state lives on the server: a sequence may move between HTTP, gRPC and a stream
    (an integer id arrives as a JSON number and as gRPC's int64_param alike)."""
    clients = [HttpClient(server), GrpcClient(server), StreamClient(server)]
    try:
        sid = f"roaming-{fresh_id()}" if string_id else fresh_id()
        total = 0.0
        for i, (c, x) in enumerate(zip(clients * 2, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], strict=True)):
            total += x
            answer = c.step(sid, x, start=i == 0, end=i == 5)
            assert answer == ([[VERSION * total]], "3", ["y"]), c.kind
    finally:
        for c in clients:
            c.close()


def test_explicit_version_and_requested_output(unary):
    sid = fresh_id()
    answer = unary.step(sid, 2.0, start=True, model_version="3")
    assert answer == ([[VERSION * 2.0]], "3", ["y"])
    module = httpclient if unary.kind == "http" else grpcclient
    outputs = [module.InferRequestedOutput("y")]
    assert unary.step(sid, 3.0, outputs=outputs) == ([[VERSION * 5.0]], "3", ["y"])
    refused(unary, "version 9 is not serving", 404, "NOT_FOUND", sid, model_version="9")
    assert unary.step(sid, 1.0, end=True, model_version="3") == ([[VERSION * 6.0]], "3", ["y"])


def test_concurrent_steps_of_one_sequence_run_one_at_a_time(unary, server):
    """Steps sent at once are applied one after another: each answer is a distinct prefix sum
    (none lost, none seeing the same state twice)."""
    sid = fresh_id()
    assert unary.step(sid, 1.0, start=True)[0] == [[3.0]]
    clients = [CLIENTS[unary.kind](server) for _ in range(12)]
    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            answers = list(pool.map(lambda c: c.step(sid, 1.0)[0][0][0], clients))
    finally:
        for c in clients:
            c.close()
    assert sorted(answers) == [VERSION * float(n) for n in range(2, 14)]
    assert unary.step(sid, 1.0, end=True)[0] == [[VERSION * 14.0]]


def test_a_step_with_batch_size_not_one_fails_and_changes_nothing(unary, server):
    sid = fresh_id()
    with pytest.raises(InferenceServerException):  # a START with 2 rows: refused before it runs
        unary.step(sid, 1.0, start=True, batch=2)
    assert live(server.url) == {VERSION: 0}
    refused(unary, "is not live", 400, "INVALID_ARGUMENT", sid)
    assert unary.step(sid, 2.0, start=True)[0] == [[6.0]]
    for batch in (2, 0):
        with pytest.raises(InferenceServerException):
            unary.step(sid, 5.0, batch=batch)
    assert unary.step(sid, 1.0, end=True)[0] == [[VERSION * 3.0]]  # the state is as it was


def test_a_step_with_batch_size_not_one_is_a_client_error(unary):
    sid = fresh_id()
    refused(unary, "", 400, "INVALID_ARGUMENT", sid, start=True, batch=2)


# ---- idle timeout --------------------------------------------------------------------------


def test_idle_sequences_end_and_active_ones_stay(server):
    http, rpc, stream = HttpClient(server), GrpcClient(server), StreamClient(server)
    try:
        idle_http, idle_grpc, busy = fresh_id(), f"idle-{fresh_id()}", fresh_id()
        assert http.step(idle_http, 1.0, start=True)[0] == [[3.0]]
        last_idle_use = time.monotonic()
        assert rpc.step(idle_grpc, 2.0, start=True)[0] == [[6.0]]
        assert stream.step(busy, 1.0, start=True)[0] == [[3.0]]
        assert live(server.url) == {VERSION: 3}
        # ``busy`` steps every 0.3 s (under the 1 s idle timeout) while the others idle out
        total = 1.0
        while live(server.url) != {VERSION: 1}:
            assert time.monotonic() - last_idle_use < 6, "idle sequences never ended"
            time.sleep(0.3)
            total += 1.0
            assert stream.step(busy, 1.0)[0] == [[VERSION * total]]
        assert time.monotonic() - last_idle_use > 1.0  # not before the idle timeout
        for c, sid in ((http, idle_http), (rpc, idle_grpc)):
            refused(c, "was idle for longer than its idle_timeout", 400, "INVALID_ARGUMENT", sid)
            # START again: a fresh sequence from the initial state
            assert c.step(sid, 5.0, start=True, end=True)[0] == [[VERSION * 5.0]]
        assert stream.step(busy, 2.0, end=True)[0] == [[VERSION * (total + 2.0)]]
    finally:
        for c in (http, rpc, stream):
            c.close()


# ---- errors ----------------------------------------------------------------------------------


def test_step_on_unknown_sequence_is_refused(unary):
    for sid in (fresh_id(), f"never-{fresh_id()}"):
        fragment = "is not live: its first request must carry sequence_start"
        message = refused(unary, fragment, 400, "INVALID_ARGUMENT", sid)
        assert message.startswith(f"sequence {sid!r} of model 'acc' ")
        refused(unary, "is not live", 400, "INVALID_ARGUMENT", sid, end=True)


def test_start_on_live_sequence_is_refused_and_keeps_its_state(unary, server):
    sid = fresh_id()
    assert unary.step(sid, 2.0, start=True)[0] == [[6.0]]
    refused(unary, "already live", 409, "FAILED_PRECONDITION", sid, start=True)
    refused(unary, "already live", 409, "FAILED_PRECONDITION", sid, start=True, end=True)
    assert live(server.url) == {VERSION: 1}
    assert unary.step(sid, 1.0, end=True)[0] == [[VERSION * 3.0]]  # the refusals changed nothing


def test_step_after_end_is_refused(unary):
    sid = f"done-{fresh_id()}"
    run_sequence(unary, sid, [1.0, 1.0])
    refused(unary, "ended (sequence_end)", 400, "INVALID_ARGUMENT", sid)
    refused(unary, "ended (sequence_end)", 400, "INVALID_ARGUMENT", sid, end=True)


def test_start_beyond_max_sequences_is_refused(unary, server):
    held = [fresh_id() for _ in range(MAX_SEQUENCES)]
    for i, sid in enumerate(held):
        assert unary.step(sid, float(i + 1), start=True)[0] == [[VERSION * (i + 1.0)]]
    extra = fresh_id()
    message = refused(unary, "max_sequences", 429, "RESOURCE_EXHAUSTED", extra, start=True)
    assert f"holds {MAX_SEQUENCES} live sequences" in message
    assert live(server.url) == {VERSION: MAX_SEQUENCES}
    # the refused START left nothing behind; live sequences are untouched
    refused(unary, "is not live", 400, "INVALID_ARGUMENT", extra)
    assert unary.step(held[0], 1.0, end=True)[0] == [[VERSION * 2.0]]
    assert unary.step(extra, 4.0, start=True)[0] == [[VERSION * 4.0]]  # a slot is free again
    for i, sid in enumerate([*held[1:], extra]):
        assert unary.step(sid, 0.0, end=True)[0] == [[VERSION * [2.0, 3.0, 4.0][i]]]


def test_sequence_id_on_a_stateless_model_is_refused(unary):
    for kwargs in ({"start": True}, {}, {"start": True, "end": True}):
        kwargs |= {"model": "plain", "width": 4}
        refused(unary, "keeps no sequences", 400, "INVALID_ARGUMENT", fresh_id(), **kwargs)


def test_stateful_model_whose_version_failed(server):
    """``broken`` declares a state of shape [32] for a model holding [64]."""
    versions = web(server.url).get("/admin/models/broken", timeout=10).json()["versions"]
    assert [(v["version"], v["state"], v["reason"], v["sequences"]) for v in versions] == [
        (1, "FAILED", "bad_sequence_config", None)
    ]
    assert "does not hold a state of shape [32]" in versions[0]["message"]
    x = {"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}
    r = web(server.url).post("/v2/models/broken/infer", json={"inputs": [x]})
    assert (r.status_code, r.json()) == (503, {"error": "model 'broken' has no version serving"})


@pytest.mark.parametrize("start", [True, False])
def test_sequence_request_to_a_stateful_model_with_no_version_is_unavailable(server, start):
    x = {"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}
    body = {"inputs": [x], "parameters": {"sequence_id": fresh_id(), "sequence_start": start}}
    r = web(server.url).post("/v2/models/broken/infer", json=body)
    assert r.status_code == 503, r.text
    assert "has no version serving" in r.json()["error"], r.text


def test_stateful_model_without_sequence_id_is_refused(unary):
    refused(unary, "is stateful", 400, "INVALID_ARGUMENT", 0)
    refused(unary, "is stateful", 400, "INVALID_ARGUMENT", "")


BAD_IDS = [  # (JSON parameters, message pattern)
    ({"sequence_id": 1.5, "sequence_start": True}, "unsigned integer or a string, not float"),
    ({"sequence_id": True, "sequence_start": True}, "unsigned integer or a string, not bool"),
    ({"sequence_id": [7], "sequence_start": True}, "unsigned integer or a string, not list"),
    ({"sequence_id": -3, "sequence_start": True}, "-3 is not an unsigned 64-bit integer"),
    # (orjson reads an integer past 64 bits as a float, so the message may say "not float")
    ({"sequence_id": 2**64, "sequence_start": True}, "sequence_id .*unsigned"),
    ({"sequence_id": "x" * 257, "sequence_start": True}, "at most 256 characters"),
    ({"sequence_id": 5, "sequence_start": "yes"}, "sequence_start must be true or false"),
    ({"sequence_id": 5, "sequence_end": 1}, "sequence_end must be true or false"),
    ({"sequence_start": True}, "need a non-zero sequence_id"),
    ({"sequence_id": 0, "sequence_end": True}, "need a non-zero sequence_id"),
    ({"sequence_id": "", "sequence_start": True}, "need a non-zero sequence_id"),
]


@pytest.mark.parametrize("parameters, pattern", BAD_IDS)
def test_bad_sequence_parameters_over_http(server, parameters, pattern):
    x = {"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}
    r = web(server.url).post("/v2/models/acc/infer", json={"inputs": [x], "parameters": parameters})
    assert r.status_code == 400, r.text
    assert re.search(pattern, r.json()["error"]), r.text


GRPC_BAD_IDS = [  # (field, value, message fragment)
    ("double_param", 1.5, "not float"),
    ("bool_param", True, "not bool"),
    ("int64_param", -3, "not an unsigned 64-bit integer"),
]


@pytest.mark.parametrize("field, value, fragment", GRPC_BAD_IDS)
def test_bad_sequence_ids_over_grpc(server, field, value, fragment):
    request = service_pb2.ModelInferRequest(model_name="acc")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 1]).contents.fp32_contents.append(1.0)
    setattr(request.parameters["sequence_id"], field, value)
    request.parameters["sequence_start"].bool_param = True
    with grpc.insecure_channel(server.grpc_hostport) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelInfer(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in err.value.details(), err.value.details()


def test_largest_uint64_id_over_http_and_grpc(server):
    x = {"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [2.0]}
    top = 2**64 - 1
    for flags, y in (({"sequence_start": True}, 6.0), ({"sequence_end": True}, 12.0)):
        body = {"inputs": [x], "parameters": {"sequence_id": top, **flags}}
        r = web(server.url).post("/v2/models/acc/infer", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == [y]
    request = service_pb2.ModelInferRequest(model_name="acc")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 1]).contents.fp32_contents.append(2.0)
    request.parameters["sequence_id"].uint64_param = top
    request.parameters["sequence_start"].bool_param = True
    request.parameters["sequence_end"].bool_param = True
    with grpc.insecure_channel(server.grpc_hostport) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert np.frombuffer(response.raw_output_contents[0], np.float32).tolist() == [6.0]


def test_errors_inside_a_stream_do_not_close_it(server):
    stream = StreamClient(server)
    try:
        sid, other = fresh_id(), f"s-{fresh_id()}"
        # pipelined: every request is sent before any answer is read; answers come in order
        plan = [
            (dict(sequence_id=sid, x=1.0), "is not live"),
            (dict(sequence_id=sid, x=2.0, start=True), 6.0),
            (dict(sequence_id=sid, x=1.0, start=True), "already live"),
            (dict(sequence_id=other, x=1.0, model="plain", width=4), "keeps no sequences"),
            (dict(sequence_id=0, x=1.0), "is stateful"),
            (dict(sequence_id=sid, x=3.0), 15.0),
            (dict(sequence_id=other, x=4.0, start=True), 12.0),
            (dict(sequence_id=sid, x=5.0, end=True), 30.0),
            (dict(sequence_id=sid, x=5.0), "ended (sequence_end)"),
            (dict(sequence_id=other, x=1.0, end=True), 15.0),
        ]
        for kwargs, _ in plan:
            kwargs = dict(kwargs)
            stream.send(kwargs.pop("sequence_id"), kwargs.pop("x"), **kwargs)
        for i, (_, expected) in enumerate(plan):
            if isinstance(expected, str):
                with pytest.raises(InferenceServerException) as err:
                    stream.receive()
                assert expected in err.value.message(), (i, err.value.message())
            else:
                assert stream.receive() == ([[expected]], "3", ["y"]), i
        # still open for more
        assert stream.step(fresh_id(), 2.0, start=True, end=True) == ([[6.0]], "3", ["y"])
    finally:
        stream.close()


# ---- metadata: the extension, hidden state ---------------------------------------------------


def test_metadata_lists_the_extension_and_hides_the_state(server):
    h = httpclient.InferenceServerClient(server.hostport)
    g = grpcclient.InferenceServerClient(server.grpc_hostport)
    try:
        assert "sequence" in h.get_server_metadata()["extensions"]
        assert "sequence" in g.get_server_metadata(as_json=True)["extensions"]
        meta = h.get_model_metadata("acc")
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}]
        assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}]
        meta = g.get_model_metadata("acc", as_json=True)
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "1"]}]
        assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": ["-1", "1"]}]
    finally:
        h.close()
        g.close()


def test_state_tensors_cannot_be_sent_or_asked_for(server):
    sid = fresh_id()
    url = "/v2/models/acc/infer"
    x = {"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [2.0]}
    h_in = {"name": "h_in", "datatype": "FP32", "shape": [1, 64], "data": [100.0] * 64}

    def post(inputs, **extra):
        return web(server.url).post(
            url, json={"inputs": inputs, "parameters": {"sequence_id": sid, **extra}}
        )

    r = post([x], sequence_start=True)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [6.0], r.text
    assert [o["name"] for o in r.json()["outputs"]] == ["y"]
    r = post([x, h_in])
    assert r.status_code == 400 and "unexpected input 'h_in'" in r.json()["error"], r.text
    r = web(server.url).post(
        url,
        json={"inputs": [x], "outputs": [{"name": "h_out"}], "parameters": {"sequence_id": sid}},
    )
    assert r.status_code == 400 and "unknown output(s) ['h_out']" in r.json()["error"], r.text
    r = post([x], sequence_end=True)  # the refused requests left the state as it was
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [12.0], r.text


# ---- operator views: baton models, the admin API ----------------------------------------------


def models_rows(url: str) -> dict[str, str]:
    """``baton models --url``'s table row for each model (one version each here)."""
    out = baton_cli("models", "--url", url)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines()[2:] if line.strip()]
    by_model = {row.split()[0]: row for row in rows}
    assert len(by_model) == len(rows), out.stdout
    return by_model


def test_live_sequences_in_baton_models_and_admin_api(server):
    """On ``patient`` (acc with a 60 s idle timeout: the CLI takes about a second per call)."""
    http = HttpClient(server)
    try:
        assert live(server.url, "patient") == {VERSION: 0}
        assert live(server.url, "plain") == {1: None}
        a, b = fresh_id(), f"b-{fresh_id()}"
        http.step(a, 1.0, start=True, model="patient")
        assert live(server.url, "patient") == {VERSION: 1}
        http.step(b, 1.0, start=True, model="patient")
        assert live(server.url, "patient") == {VERSION: 2}
        rows = models_rows(server.url)
        assert rows["patient"].split()[1:] == ["3", "SERVING", "0", "default", "2", "sequences"]
        assert rows["acc"].split() == ["acc", "3", "SERVING", "0", "default", "0", "sequences"]
        assert rows["plain"].split() == ["plain", "1", "SERVING", "0", "default"]
        assert live(server.url) == {VERSION: 0}  # another model's sequences are its own
        http.step(a, 1.0, end=True, model="patient")
        assert live(server.url, "patient") == {VERSION: 1}
        assert models_rows(server.url)["patient"].split()[4:] == ["default", "1", "sequence"]
        http.step(b, 1.0, end=True, model="patient")
        assert live(server.url, "patient") == {VERSION: 0}
    finally:
        http.close()


# ---- --workers 2 ---------------------------------------------------------------------------


def test_stateful_model_needs_one_worker(server_factory, tmp_path):
    repo = tmp_path / "repo"
    write_sequence_version(repo / "acc", VERSION)
    (repo / "acc" / "model.yaml").write_text(SEQUENCE_YAML)
    write_version(repo / "plain", 1, affine_model(1.0))
    s = server_factory(repo, args=("--workers", "2"))

    def failed():
        version = web(s.url).get("/admin/models/acc", timeout=10).json()["versions"][0]
        return version if version["state"] == "FAILED" else None

    version = wait_for(failed, 20, "acc version 3 FAILED")
    assert version["version"] == VERSION and version["reason"] == "unsupported"
    assert "--workers 1" in version["message"] and version["sequences"] is None
    x = {"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}
    r = web(s.url).post("/v2/models/acc/infer", json={"inputs": [x]})
    assert (r.status_code, r.json()) == (503, {"error": "model 'acc' has no version serving"})
    step = {"inputs": [x], "parameters": {"sequence_id": 5}}  # on a worker, for no model at all
    r = web(s.url).post("/v2/models/nothing/infer", json=step)
    assert (r.status_code, r.json()) == (404, {"error": "unknown model 'nothing'"})
    plain = web(s.url).get("/admin/models/plain").json()["versions"]  # the stateless one serves
    assert [(v["version"], v["state"], v["sequences"]) for v in plain] == [(1, "SERVING", None)]
