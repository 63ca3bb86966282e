"""Hypothesis strategies that fuzz a real Baton server, and the probes that send them.

Shared by the fuzz tests (``tests/fuzz``: about 2,000 cases in ``make test``) and
``bench/fuzz.py`` (20,000 and more). Targets:

- the admin API, with requests schemathesis draws from ``GET /admin/openapi.json`` (path
  parameters often pointed at real models, labels and rollout actions, so actions take effect),
  and query values that look like numbers (``limit``, ``before``, ``wait``);
- ``POST /v2/models/{m}[/versions/{v}]/infer``: JSON bodies (valid, almost valid, garbage), the
  binary tensor data extension (``Inference-Header-Content-Length``, ``binary_data_size``, BYTES
  length prefixes), ``Content-Encoding`` (gzip/deflate with junk), and model paths;
- gRPC ``ModelInfer`` with mutated ``ModelInferRequest`` messages, and bytes that are no
  protobuf at all sent to several RPCs.

Every case must be answered, never with a 5xx over HTTP nor ``INTERNAL`` or ``UNKNOWN`` over
gRPC; a case that is a valid request must also get the right values. Meanwhile
:class:`GoodTraffic` sends valid requests and checks every answer.

Sizes: ``BUDGET[target]`` cases per target, times ``$BATON_FUZZ_SCALE`` (default 1).
"""

from __future__ import annotations

import copy
import functools
import gzip
import json
import os
import re
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import grpc
import httpx
import numpy as np
import orjson
import requests
from hypothesis import HealthCheck, reject, settings
from hypothesis import strategies as st

from baton.api.grpc import inference_pb2 as pb
from baton.api.grpc.codec import CONTENTS_FIELD
from baton.dev.demo import affine_model, write_version
from baton.dev.testing import ServerProcess
from baton.settings import parse_duration
from tests.integration.protocol_models import NUMPY, TYPES, write_protocol_repository

# ---- sizes ------------------------------------------------------------------------------

SCALE_ENV = "BATON_FUZZ_SCALE"
#: Cases per target at scale 1 (the ``make test`` slice): 2,000 in all.
BUDGET = {
    "admin_schema": 350,
    "admin_values": 100,
    "http_json": 500,
    "http_binary": 300,
    "http_encoding": 150,
    "http_paths": 100,
    "grpc_messages": 400,
    "grpc_bytes": 100,
}


def scale() -> float:
    """The multiplier for every budget, from ``$BATON_FUZZ_SCALE`` (default 1)."""
    return float(os.environ.get(SCALE_ENV) or 1)


def budget(target: str, factor: float | None = None) -> int:
    return max(1, round(BUDGET[target] * (scale() if factor is None else factor)))


def fuzz_settings(target: str, factor: float | None = None, **kwargs) -> settings:
    """Hypothesis settings for a target: its budget, no deadline (a real server on a busy
    machine), no example database (nothing written to the working tree)."""
    return settings(
        max_examples=budget(target, factor),
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,  # good traffic spans all examples of a test
        ],
        **kwargs,
    )


# ---- the server -------------------------------------------------------------------------

MAX_BODY = 1 << 20  # BATON_MAX_REQUEST_BYTES of the fuzzed servers
GOOD_MODEL = "affine"
#: y = x + OFFSETS[model][version] for the FP32[-1, 4] models; "types" is an identity.
OFFSETS = {
    "affine": {"1": 1.0, "2": 2.0},
    "spare": {"1": 7.0},
    "m": {"1": 1.0, "2": 2.0, "3": 3.0},
}
MODELS = ("affine", "types", "spare", "m")
#: The versions (numbers and labels) a valid request may name, ``None`` for none.
VERSIONS = {
    "affine": (None, "1", "2", "stable"),
    "types": (None, "1"),
    "spare": (None, "1"),
    "m": (None, "1", "2", "3"),
}


def write_fuzz_repository(root: Path) -> Path:
    """The protocol tests' repository (``affine`` v1/v2 labelled ``stable: 1``, ``types``
    with every datatype, ``spare``) and ``m`` v1..v3 (y = x + version)."""
    write_protocol_repository(root)
    for v in (1, 2, 3):
        write_version(root / "m", v, affine_model(float(v)))
    return root


#: How often a running rollout's gates are checked (the default is 1 s): often, so that the
#: rollout machinery runs many times while admin requests change the models under it.
ROLLOUT_PERIOD = "0.05"


def start_fuzz_server(repository: Path, log: Path) -> ServerProcess:
    """``baton serve`` on loopback ports with a 1 MiB body limit and gate checks every 50 ms."""
    return ServerProcess.start(
        repository,
        log,
        poll_interval=0.5,
        log_level="warning",
        env={"BATON_MAX_REQUEST_BYTES": str(MAX_BODY), "BATON_ROLLOUT_PERIOD": ROLLOUT_PERIOD},
        timeout=120,
    )


def stop_server(server: ServerProcess, timeout: float = 30) -> str | None:
    """SIGTERM; what went wrong (no exit in ``timeout`` s: killed; a non-zero exit), or
    ``None`` when it exited 0."""
    try:
        code = server.stop(timeout)
    except subprocess.TimeoutExpired:
        return (
            f"the server did not exit within {timeout} s of SIGTERM (killed):\n"
            + (server.output()[-3000:])
        )
    if code != 0:
        return f"the server exited with {code} on SIGTERM:\n{server.output()[-3000:]}"
    return None


def log_excerpt(server: ServerProcess, text: str, lines: int = 40) -> str:
    """The server log's record for the request id named in ``text`` (a 5xx answer), else the
    log's last error record."""
    log = server.output().splitlines()
    match = re.search(r"request ([0-9a-f]{12})", text)
    starts = [i for i, line in enumerate(log) if (match and match.group(1) in line)]
    if not starts:
        starts = [i for i, line in enumerate(log) if " ERROR " in line][-1:]
    if not starts:
        return "(nothing in the server log)"
    first, out = starts[0], [log[starts[0]]]
    for line in log[first + 1 : first + lines]:
        if re.match(r"\d{4}-\d\d-\d\d ", line):
            break
        out.append(line)
    return "\n".join(out)


def server_gone(server: ServerProcess) -> str | None:
    """Why the server is no longer running (with its log's end), or ``None``."""
    code = server.process.poll()
    if code is None:
        return None
    return f"the server exited with {code}:\n{server.output()[-3000:]}"


def server_hung(server: ServerProcess) -> str | None:
    """``None`` if the server answers its liveness check within 10 s; else a sentence."""
    try:
        httpx.get(f"{server.url}/v2/health/live", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        return f"the server no longer answers GET /v2/health/live ({exc!r})"
    return None


class ServerBroken(BaseException):
    """The server died or stopped answering. A ``BaseException``, so that hypothesis stops the
    test at once (no more cases, no shrinking: every later case would fail the same way);
    the message says which request came last."""


def _finish(server: ServerProcess, answer: Answer, problems: list[str], request: str) -> list[str]:
    """``problems`` with the request and (for a 5xx) the server log's record; raises
    :class:`ServerBroken` if the server has exited, or stopped answering."""
    broken = [server_gone(server)]
    if broken[0] is None and answer.status in (None, "DEADLINE_EXCEEDED"):
        broken = [server_hung(server)]
    if not problems and broken[0] is None:
        return []
    report = [*problems, *(b for b in broken if b), f"request: {request}"]
    if answer.bad and answer.status not in (None, "DEADLINE_EXCEEDED"):
        report.append(f"server log:\n{log_excerpt(server, answer.text)}")
    if broken[0] is not None:
        raise ServerBroken("\n".join(report))
    return report


# ---- answers ----------------------------------------------------------------------------

BAD_GRPC = frozenset({"INTERNAL", "UNKNOWN", "DATA_LOSS", "DEADLINE_EXCEEDED"})


@dataclass
class Answer:
    status: int | str | None  # HTTP status, gRPC status name, or None: no answer
    text: str = ""
    content: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def bad(self) -> bool:
        """A 5xx, ``INTERNAL``/``UNKNOWN`` (or no answer in time), or no answer at all."""
        if self.status is None:
            return True
        if isinstance(self.status, int):
            return self.status >= 500
        return self.status in BAD_GRPC


# ---- tensors and valid requests ---------------------------------------------------------


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    values: list  # flat, row-major; BYTES as str (requests) or bytes (answers)

    def nested(self) -> list:
        """``values`` nested to ``shape`` (a JSON ``data`` may be flat or nested)."""

        def build(flat: list, dims: list[int]) -> list:
            if len(dims) <= 1:
                return list(flat)
            step = len(flat) // dims[0] if dims[0] else 0
            return [build(flat[i * step : (i + 1) * step], dims[1:]) for i in range(dims[0])]

        return build(self.values, self.shape)

    def raw(self) -> bytes:
        """The tensor as the binary extension and ``raw_input_contents`` carry it."""
        if self.datatype == "BYTES":
            items = [v.encode() if isinstance(v, str) else v for v in self.values]
            return b"".join(struct.pack("<I", len(b)) + b for b in items)
        dtype = np.dtype(NUMPY[self.datatype]).newbyteorder("<")
        return np.array(self.values, dtype=NUMPY[self.datatype]).astype(dtype).tobytes()


def decode_raw(datatype: str, raw: bytes) -> list:
    """Flat values from raw tensor bytes (BYTES elements as ``bytes``)."""
    if datatype == "BYTES":
        items, offset = [], 0
        while offset < len(raw):
            (n,) = struct.unpack_from("<I", raw, offset)
            items.append(bytes(raw[offset + 4 : offset + 4 + n]))
            offset += 4 + n
        return items
    return np.frombuffer(raw, np.dtype(NUMPY[datatype]).newbyteorder("<")).tolist()


def _flatten(data: object) -> list:
    if not isinstance(data, list):
        return [data]
    return [v for item in data for v in _flatten(item)]


def _same(want: Tensor, got: Tensor, affine: bool) -> bool:
    """Equal values: exactly (integers and booleans as Python values, floats after rounding
    to the datatype), or within 1e-6 for the affine models' sums."""
    if len(want.values) != len(got.values):
        return False
    if want.datatype == "BYTES":
        norm = lambda vs: [v.encode() if isinstance(v, str) else v for v in vs]  # noqa: E731
        return norm(want.values) == norm(got.values)
    if not want.datatype.startswith("FP"):
        kinds = {bool} if want.datatype == "BOOL" else {int}
        return all(type(g) in kinds for g in got.values) and got.values == want.values
    dtype = NUMPY[want.datatype]
    try:
        with np.errstate(over="ignore"):
            a = np.array(want.values, np.float64).astype(dtype)
            b = np.array(got.values, np.float64).astype(dtype)
    except (TypeError, ValueError):
        return False
    if affine:
        return bool(np.allclose(a, b, rtol=1e-6, atol=1e-6))
    return bool(np.array_equal(a, b))


@dataclass
class InferCall:
    """A valid request and what its answer must be: y = x + the answering version's offset
    for the affine models, the inputs back for ``types``."""

    model: str
    version: str | None
    inputs: list[Tensor]
    outputs: list[str] | None = None  # the outputs asked for; None = all

    def path(self) -> str:
        return infer_path(self.model, self.version)

    def versions(self) -> set[str]:
        """The versions allowed to answer: the one named, else any of the model's."""
        if self.version is not None and self.version.isdigit():
            return {self.version}
        return set(OFFSETS.get(self.model, {"1": 0.0}))

    def expected(self, version: str) -> dict[str, Tensor]:
        if self.model == "types":
            out = {
                f"out_{t.name[3:]}": Tensor(f"out_{t.name[3:]}", t.datatype, t.shape, t.values)
                for t in self.inputs
            }
        else:
            (x,) = self.inputs
            y = np.array(x.values, np.float32) + np.float32(OFFSETS[self.model][version])
            out = {"y": Tensor("y", "FP32", x.shape, y.tolist())}
        return {k: v for k, v in out.items() if self.outputs is None or k in self.outputs}

    def check(self, version: object, outputs: dict[str, Tensor]) -> list[str]:
        """What is wrong with an answer from ``version`` carrying ``outputs``."""
        if version not in self.versions():
            return [f"answered by version {version!r}, expected one of {sorted(self.versions())}"]
        problems = []
        expected = self.expected(str(version))
        if set(outputs) != set(expected):
            problems.append(f"outputs {sorted(outputs)}, expected {sorted(expected)}")
        for name, want in expected.items():
            got = outputs.get(name)
            if got is None:
                continue
            if got.datatype != want.datatype or list(got.shape) != list(want.shape):
                problems.append(
                    f"output {name!r} is {got.datatype}{list(got.shape)}, "
                    f"expected {want.datatype}{list(want.shape)}"
                )
            elif not _same(want, got, affine=self.model != "types"):
                problems.append(f"output {name!r} = {got.values[:8]}, expected {want.values[:8]}")
        return problems


def infer_path(model: str, version: str | None, tail: str = "infer") -> str:
    base = f"/v2/models/{quote(model, safe='')}"
    if version is not None:
        base += f"/versions/{quote(version, safe='')}"
    return f"{base}/{tail}" if tail else base


def _int_range(datatype: str) -> st.SearchStrategy[int]:
    info = np.iinfo(NUMPY[datatype])
    return st.integers(int(info.min), int(info.max))


ELEMENTS: dict[str, st.SearchStrategy] = {
    "BOOL": st.booleans(),
    **{t: _int_range(t) for t in TYPES if t.startswith(("INT", "UINT"))},
    "FP16": st.floats(width=16, allow_nan=False, allow_infinity=False),
    "FP32": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "FP64": st.floats(allow_nan=False, allow_infinity=False),
    "BYTES": st.text(max_size=12),
}


@st.composite
def valid_calls(draw) -> InferCall:
    """A valid request to ``affine``, ``spare`` (FP32[n, 4]) or ``types`` (every datatype)."""
    model = draw(st.sampled_from(["affine", "affine", "spare", "types"]))
    version = draw(st.sampled_from(VERSIONS[model]))
    n = draw(st.integers(0, 3))
    if model == "types":
        inputs = [
            Tensor(f"in_{dt}", dt, [n], draw(st.lists(ELEMENTS[dt], min_size=n, max_size=n)))
            for dt in TYPES
        ]
        inputs = draw(st.permutations(inputs))
        names = [f"out_{dt}" for dt in TYPES]
    else:
        x = draw(st.lists(st.floats(-1e6, 1e6, width=32), min_size=4 * n, max_size=4 * n))
        inputs = [Tensor("x", "FP32", [n, 4], x)]
        names = ["y"]
    outputs = draw(st.none() | st.lists(st.sampled_from(names), min_size=1, unique=True))
    return InferCall(model, version, inputs, outputs)


# ---- generic junk -----------------------------------------------------------------------

DATATYPE_NAMES = [*TYPES, "BF16"]
JUNK_DATATYPES = ["", "fp32", "FLOAT", "FP8", "INT128", "FP32 ", "BYTES\x00", "STRING", "ÜINT8"]
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)


def _json_containers(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children,
                                                            max_size=4)  # fmt: skip


json_values = st.recursive(json_scalars, _json_containers, max_leaves=12)
#: Texts that look like numbers: ASCII, Arabic-Indic, fullwidth and mathematical digits (int()
#: reads them), superscripts and circled digits (str.isdigit() says yes, int() says no), signs,
#: exponents and separators.
DIGITS = (
    "0123456789"
    "\u0660\u0661\u0662\u0663\u0669\uff10\uff11\uff19\U0001d7d8\U0001d7d9"
    "\u07c1\u09e9\u00b9\u00b2\u00b3\u2070\u2074\u2460\u2469\u216b\u2181"
    "\u00bd"
)
#: Texts ``str.isdigit`` accepts and ``int`` may not (and the Unicode digits ``int`` reads).
digit_traps = st.sampled_from(
    [
        "\u00b2",
        "\u00b9",
        "\u2070",
        "\u2460",
        "1\u00b2",
        "2\u00b3",
        "\u0663",
        "\uff11",
        "\U0001d7d9",
        "\u07c1",
    ]
)
numberish = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.text(alphabet=DIGITS + "+-._ eEx", max_size=6),
    st.sampled_from(["", "1", "2", "0", "-1", "1e3", "0x10", "nan", "inf", "1_0"]),
    digit_traps,
)
durations = st.one_of(
    numberish,
    st.tuples(numberish, st.sampled_from(["", "s", "ms", "m", "h", "d", " s", "S"])).map("".join),
)
#: Header values h11 will send: visible ASCII and Latin-1, no whitespace at either end.
header_values = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_categories=["Cc"]),
    max_size=24,
).map(lambda s: s.encode("latin-1"))
names = st.one_of(
    st.sampled_from([*MODELS, "", "AFFINE", "affine ", "unknown", "types\x00", "..", "."]),
    st.text(max_size=12),
    numberish,
)
version_names = st.one_of(
    st.none(),
    st.sampled_from(["1", "2", "3", "0", "01", "stable", "canary", "-1", "1.0", ""]),
    numberish,
    st.text(max_size=8),
)


def _deep(depth: int, open_: bytes, close: bytes) -> bytes:
    return open_ * depth + b"1" + close * depth


#: Raw JSON fragments (spliced into a body in place of a marker string).
RAW_FRAGMENTS = [
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e999",
    b"-1e999",
    b"1" * 400,
    b'"\xff\xfe"',  # not UTF-8
    b'"\xc3\x28"',  # a broken two-byte sequence
    b'"\xc0\xaf"',  # an overlong encoding
    b'"\xed\xa0\x80"',  # a UTF-8-encoded surrogate
    b'"\\ud800"',  # an escaped lone surrogate
    b'"a\x00b"',  # a raw control character
    _deep(70, b"[", b"]"),
    _deep(1100, b"[", b"]"),
    _deep(100_000, b"[", b"]"),
    _deep(2000, b'{"a":', b"}"),
]
MARKER = "@@fragment{}@@"


def _dumps(doc: object, fragments: list[bytes]) -> bytes:
    """JSON bytes of ``doc`` with each ``MARKER`` string replaced by its raw fragment."""
    body = json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")
    for i, fragment in enumerate(fragments):
        body = body.replace(f'"{MARKER.format(i)}"'.encode(), fragment)
    return body


@dataclass
class HttpCase:
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, bytes] = field(default_factory=dict)
    expect: InferCall | None = None  # a valid request: the answer must be right
    note: str = ""

    def __repr__(self) -> str:
        return f"HttpCase({self.method} {self.path}, {len(self.body)}-byte body, {self.note})"

    def describe(self) -> str:
        body = self.body if len(self.body) <= 3000 else self.body[:3000] + b"..."
        return (
            f"{self.method} {self.path} ({self.note})\nheaders: {self.headers!r}\n"
            f"body ({len(self.body)} bytes): {body!r}"
        )


# ---- JSON bodies ------------------------------------------------------------------------


def json_doc(draw, call: InferCall) -> dict:
    """A v2 JSON body for ``call`` (data flat or nested, optional id, outputs, parameters)."""
    inputs = [
        {
            "name": t.name,
            "datatype": t.datatype,
            "shape": t.shape,
            "data": t.nested() if draw(st.booleans()) else t.values,
        }
        for t in call.inputs
    ]
    doc: dict = {"inputs": inputs}
    if draw(st.booleans()):
        doc["id"] = draw(st.text(max_size=8))
    if call.outputs is not None:
        doc["outputs"] = [{"name": n} for n in call.outputs]
    return doc


@st.composite
def bad_shapes(draw) -> object:
    return draw(
        st.one_of(
            st.lists(st.integers(0, 5), max_size=4),
            st.lists(st.integers(-(2**63), 2**64), max_size=4),
            st.lists(st.sampled_from([0, 1, 1, 1]), min_size=60, max_size=100),
            st.lists(st.sampled_from([2**31, 2**31 + 1, 2**32, 2**62, 2**63 - 1]), max_size=3),
            st.lists(st.floats(allow_nan=False) | st.booleans() | st.text(max_size=2), max_size=3),
            json_values,
        )
    )


@st.composite
def bad_data(draw, fragments: list[bytes]) -> object:
    """A ``data`` value that is wrong somehow."""
    kind = draw(st.integers(0, 7))
    if kind == 0:
        return draw(json_values)
    if kind == 1:
        fragments.append(draw(st.sampled_from(RAW_FRAGMENTS)))
        return MARKER.format(len(fragments) - 1)
    if kind == 2:  # elements of the wrong kind
        element = st.one_of(
            st.text(alphabet="0123456789.e-", max_size=4),
            st.booleans(),
            st.none(),
            st.just({}),
            st.just([]),
            st.floats(allow_nan=False),
            st.sampled_from([2**64, -(2**63) - 1, 2**100, 1.5, 1e308, -1e308, 65504.1]),
        )
        return draw(st.lists(element, min_size=1, max_size=8))
    if kind == 3:  # the right values, nested more deeply than the shape
        return [[[v] for v in draw(st.lists(st.integers(0, 3), max_size=4))]]
    if kind == 4:  # a ragged list
        return [[1, 2], [3]]
    if kind == 5:  # a scalar
        return draw(json_scalars)
    if kind == 6:  # many values
        return [0] * draw(st.sampled_from([5, 1000, 70_000]))
    return draw(st.lists(st.integers(-(2**64), 2**64), max_size=8))


#: What :func:`mutate` may do (the likelier ones listed more than once).
MUTATIONS = (
    "datatype",
    "datatype",
    "shape",
    "shape",
    "shape",
    "data",
    "data",
    "drop_key",
    "name",
    "extra_input",
    "duplicate_input",
    "drop_input",
    "input_parameters",
    "parameters",
    "outputs",
    "id",
    "inputs",
    "top_level",
    "fragment",
)


def mutate(draw, doc: dict, fragments: list[bytes]) -> object:
    """Apply 1-3 random mutations to a (copied) v2 JSON body; returns the new body value."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(MUTATIONS))
        inputs = doc.get("inputs") if isinstance(doc, dict) else None
        tensors = [t for t in inputs if isinstance(t, dict)] if isinstance(inputs, list) else []
        tensor = draw(st.sampled_from(tensors)) if tensors else None
        if what == "datatype" and tensor is not None:
            tensor["datatype"] = draw(
                st.sampled_from(DATATYPE_NAMES + JUNK_DATATYPES) | json_scalars
            )
        elif what == "shape" and tensor is not None:
            shape = tensor.get("shape")
            if isinstance(shape, list) and draw(st.booleans()):  # as many elements, more dims
                tensor["shape"] = shape + [1] * draw(st.sampled_from([1, 62, 63, 64, 100]))
            else:
                tensor["shape"] = draw(bad_shapes())
        elif what == "data" and tensor is not None:
            tensor["data"] = draw(bad_data(fragments))
        elif what == "drop_key" and tensor is not None and tensor:
            tensor.pop(draw(st.sampled_from(sorted(tensor))))
        elif what == "name" and tensor is not None:
            tensor["name"] = draw(st.text(max_size=8) | json_scalars)
        elif what == "extra_input" and isinstance(inputs, list):
            extra = {
                "name": draw(st.text(max_size=6)),
                "datatype": draw(st.sampled_from(DATATYPE_NAMES)),
                "shape": draw(bad_shapes()),
                "data": draw(bad_data(fragments)),
            }
            inputs.insert(draw(st.integers(0, len(inputs))), extra)
        elif what == "duplicate_input" and tensor is not None:
            inputs.append(copy.deepcopy(tensor))
        elif what == "drop_input" and tensor is not None:
            inputs.remove(tensor)
        elif what == "input_parameters" and tensor is not None:
            tensor["parameters"] = draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "binary_data_size": json_scalars,
                        "content_type": json_scalars,
                        draw(st.text(max_size=5)): json_values,
                    },
                )
                | json_values
            )
        elif what == "parameters" and isinstance(doc, dict):
            doc["parameters"] = draw(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "binary_data_output": json_scalars,
                        "session": json_values,
                        draw(st.text(max_size=5)): json_values,
                    },
                )
                | json_values
            )
        elif what == "outputs" and isinstance(doc, dict):
            output = st.fixed_dictionaries(
                {"name": st.sampled_from(["y", "out_FP32", "x", ""]) | json_scalars},
                optional={"parameters": json_values | st.just({"binary_data": True})},
            )
            doc["outputs"] = draw(st.lists(output | json_values, max_size=3) | json_scalars)
        elif what == "id" and isinstance(doc, dict):
            doc["id"] = draw(json_values | st.text(min_size=1000, max_size=1000))
        elif what == "inputs" and isinstance(doc, dict):
            doc["inputs"] = draw(st.just([]) | json_scalars | st.lists(json_values, max_size=2))
        elif what == "top_level":
            doc = draw(st.lists(st.just(doc), max_size=2) | json_scalars)
        elif what == "fragment" and tensor is not None:
            fragments.append(draw(st.sampled_from(RAW_FRAGMENTS)))
            key = draw(st.sampled_from(["name", "datatype", "shape", "data", "parameters"]))
            tensor[key] = MARKER.format(len(fragments) - 1)
    return doc


@st.composite
def garbage_bodies(draw) -> bytes:
    """Bodies that are no v2 request at all."""
    doc = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                  "data": [0, 0, 0, 0]}]}).encode()  # fmt: skip
    return draw(
        st.one_of(
            st.binary(max_size=300),
            json_values.map(lambda v: json.dumps(v).encode()),
            st.sampled_from(RAW_FRAGMENTS),
            st.text(max_size=50).map(str.encode),
            st.integers(0, len(doc) - 1).map(lambda n: doc[:n]),  # truncated
            st.just(b"\xef\xbb\xbf" + doc),  # a byte-order mark
            st.just(doc.decode().encode("utf-16")),
            st.just(doc + b"\n{}"),  # two documents
            st.just(b" " * 1000 + doc),
            st.just(b"[" * 500_000),  # half a megabyte of nesting that never closes
            st.just(b"0" * (MAX_BODY + 1)),  # over the body limit
        )
    )


@st.composite
def infer_paths(draw, call: InferCall) -> str:
    """Mostly the call's own model and version, sometimes fuzzed names."""
    if draw(st.integers(0, 4)):
        return call.path()
    return infer_path(draw(names), draw(version_names))


@st.composite
def http_json_cases(draw) -> HttpCase:
    """JSON infer bodies: valid (the answer is checked), mutated, or garbage."""
    call = draw(valid_calls())
    kind = draw(st.sampled_from(["mutated", "mutated", "valid", "mutated", "garbage"]))
    headers = {}
    if draw(st.integers(0, 5)) == 0:
        headers["content-type"] = draw(header_values)
    if kind == "valid":
        body = _dumps(json_doc(draw, call), [])
        return HttpCase("POST", call.path(), body, headers, call, "valid")
    path = draw(infer_paths(call))
    if kind == "garbage":
        return HttpCase("POST", path, draw(garbage_bodies()), headers, None, "garbage")
    fragments: list[bytes] = []
    doc = mutate(draw, json_doc(draw, call), fragments)
    return HttpCase("POST", path, _dumps(doc, fragments), headers, None, "mutated")


# ---- the binary tensor data extension ---------------------------------------------------

LENGTH_LIES = st.one_of(
    st.integers(-8, 8),  # added to the true value
    st.sampled_from(["0", "-1", "", "+{n}", "{n}.0", "0x10", "1_0", "٣", "²", "9" * 30, "{n}a"]),
)


def _lying_bytes(draw, values: list[str]) -> bytes:
    """BYTES raw data whose length prefixes lie (or are cut, or count the wrong elements)."""
    items = [v.encode() for v in values] or [b""]
    kind = draw(st.integers(0, 4))
    if kind == 0:  # a prefix longer than what follows
        i = draw(st.integers(0, len(items) - 1))
        extra = draw(st.sampled_from([1, 5, 2**31, 2**32 - 1]))
        parts = [struct.pack("<I", min(len(b) + (extra if j == i else 0), 2**32 - 1)) + b
                 for j, b in enumerate(items)]  # fmt: skip
        return b"".join(parts)
    if kind == 1:  # a prefix shorter than the element
        return b"".join(struct.pack("<I", max(len(b) - 1, 0)) + b + b"!" for b in items)
    if kind == 2:  # the data ends inside a prefix
        return b"".join(struct.pack("<I", len(b)) + b for b in items) + b"\x01\x00"
    if kind == 3:  # one element too many
        return b"".join(struct.pack("<I", len(b)) + b for b in [*items, b"extra"])
    return draw(st.binary(max_size=24))


@st.composite
def http_binary_cases(draw) -> HttpCase:
    """Binary tensor data: valid (checked), or with lying sizes, header lengths and BYTES
    length prefixes, missing or trailing bytes, no header length, a mutated JSON part."""
    call = draw(valid_calls())
    doc = json_doc(draw, call)
    binary = [draw(st.booleans()) for _ in call.inputs]
    if not any(binary):
        binary[draw(st.integers(0, len(binary) - 1))] = True
    blobs: list[bytes] = []
    raw_items = []  # (JSON item, tensor, index of its blob)
    for item, tensor, as_raw in zip(doc["inputs"], call.inputs, binary, strict=True):
        if as_raw:
            blob = tensor.raw()
            del item["data"]
            item["parameters"] = {"binary_data_size": len(blob)}
            raw_items.append((item, tensor, len(blobs)))
            blobs.append(blob)
    if draw(st.booleans()):
        doc["parameters"] = {"binary_data_output": True}
    elif call.outputs and draw(st.booleans()):
        doc["outputs"] = [{"name": n, "parameters": {"binary_data": draw(st.booleans())}}
                          for n in call.outputs]  # fmt: skip
    kind = draw(st.sampled_from(["size", "length", "valid", "prefix", "tail", "short",
                                 "no_length", "json"]))  # fmt: skip
    fragments: list[bytes] = []
    if kind == "size":
        item, _, _ = draw(st.sampled_from(raw_items))
        lie = draw(LENGTH_LIES | json_scalars)
        size = item["parameters"]["binary_data_size"]
        item["parameters"]["binary_data_size"] = size + lie if isinstance(lie, int) else lie
    elif kind == "prefix":
        bytes_items = [r for r in raw_items if r[1].datatype == "BYTES"]
        item, tensor, i = bytes_items[0] if bytes_items else raw_items[0]
        if bytes_items:
            blobs[i] = _lying_bytes(draw, tensor.values)
        else:  # a fixed-size blob whose length is no multiple of the element size
            blobs[i] += b"\x00"
        if draw(st.booleans()):
            item["parameters"]["binary_data_size"] = len(blobs[i])
    header = _dumps(mutate(draw, doc, fragments) if kind == "json" else doc, fragments)
    body = header + b"".join(blobs)
    length = str(len(header)).encode()
    if kind == "length":
        lie = draw(LENGTH_LIES)
        if isinstance(lie, int):
            length = str(len(header) + lie).encode()
        else:
            length = lie.format(n=len(header)).encode()
    elif kind == "tail":
        body += draw(st.binary(min_size=1, max_size=16))
    elif kind == "short":
        body = body[: len(body) - draw(st.integers(1, max(1, len(body) - len(header))))]
    headers = {} if kind == "no_length" else {"inference-header-content-length": length}
    if kind == "length" and not length:
        headers = {"inference-header-content-length": b""}
    expect = call if kind == "valid" else None
    path = call.path() if kind == "valid" else draw(infer_paths(call))
    return HttpCase("POST", path, body, headers, expect, f"binary {kind}")


# ---- Content-Encoding -------------------------------------------------------------------


@functools.cache
def _bomb(encoding: str) -> bytes:
    """8 MiB of zeros compressed to a few kB (the limit is 1 MiB)."""
    zeros = b"\0" * (8 * MAX_BODY)
    return gzip.compress(zeros) if encoding == "gzip" else zlib.compress(zeros)


def _compress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "raw":
        packer = zlib.compressobj(wbits=-15)
        return packer.compress(body) + packer.flush()
    return zlib.compress(body)


ENCODINGS = ["gzip", "deflate", "GZIP", "Deflate", "identity", "IDENTITY", "br", "compress",
             "x-gzip", "gzip, deflate", "deflate, gzip", "*", "zstd"]  # fmt: skip


ENCODED = ["right", "junk_after", "truncated", "plain", "junk", "other", "raw_deflate", "double",
           "bomb", "empty", "garbage_inside"]  # fmt: skip


@st.composite
def http_encoding_cases(draw) -> HttpCase:
    """``Content-Encoding`` gzip/deflate (and others) over valid, junk, truncated, doubly
    compressed and bomb bodies; other headers (``x-baton-session``) fuzzed along."""
    call = draw(valid_calls())
    body = _dumps(json_doc(draw, call), [])
    encoding = draw(st.sampled_from(ENCODINGS).map(str.encode) | header_values)
    name = encoding.decode("latin-1").lower()
    algorithm = name if name in ("gzip", "deflate") else draw(st.sampled_from(["gzip", "deflate"]))
    other = "deflate" if algorithm == "gzip" else "gzip"
    kind = draw(st.sampled_from(ENCODED))
    packed = _compress(body, algorithm)
    payload = {
        "right": lambda: packed,
        "junk_after": lambda: packed + draw(st.binary(min_size=1, max_size=32)),
        "truncated": lambda: packed[: draw(st.integers(0, len(packed) - 1))],
        "plain": lambda: body,
        "junk": lambda: draw(st.binary(max_size=64)),
        "other": lambda: _compress(body, other),
        "raw_deflate": lambda: _compress(body, "raw"),
        "double": lambda: _compress(packed, algorithm),
        "bomb": lambda: _bomb(algorithm),
        "empty": lambda: b"",
        "garbage_inside": lambda: _compress(draw(garbage_bodies())[:5000], algorithm),
    }[kind]()
    headers = {"content-encoding": encoding}
    if draw(st.booleans()):
        headers["x-baton-session"] = draw(header_values)
    valid = (kind == "right" and name in ("gzip", "deflate")) or (
        kind == "plain" and encoding == b"identity"
    )
    return HttpCase("POST", call.path(), payload, headers, call if valid else None,
                    f"content-encoding {kind}")  # fmt: skip


# ---- model paths ------------------------------------------------------------------------


@st.composite
def http_path_cases(draw) -> HttpCase:
    """Metadata, readiness and infer paths with fuzzed model and version names (numbers that
    ``str.isdigit`` accepts and ``int`` does not, labels, unicode) and methods."""
    model = draw(st.sampled_from(MODELS) | names)
    version = draw(version_names | digit_traps)
    tail = draw(st.sampled_from(["", "ready", "infer", "infer"]))
    method = "POST" if tail == "infer" else "GET"
    method = draw(st.sampled_from([method] * 6 + ["PUT", "DELETE", "PATCH", "HEAD"]))
    body = b""
    if tail == "infer":
        x = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
        body = json.dumps({"inputs": [x]}).encode()
    return HttpCase(method, infer_path(model, version, tail), body, {}, None, "path")


# ---- the probes -------------------------------------------------------------------------


class HttpProbe:
    """Sends :class:`HttpCase` s to a server and says what is wrong with each answer."""

    def __init__(self, server: ServerProcess, timeout: float = 30) -> None:
        self.server, self.timeout = server, timeout
        self.client = self._client()

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=self.timeout)

    def close(self) -> None:
        self.client.close()

    def send(self, case: HttpCase) -> Answer:
        error: Exception | None = None
        for _ in range(2):  # a fresh connection if the server closed the last one
            try:
                r = self.client.request(
                    case.method, case.path, content=case.body, headers=case.headers
                )
            except httpx.LocalProtocolError:
                reject()  # a request h11 will not send (an illegal header): not a case
            except httpx.TimeoutException as exc:
                return Answer(None, f"no answer within {self.timeout} s ({exc!r})")
            except httpx.TransportError as exc:
                error = exc
                self.client.close()
                self.client = self._client()
                continue
            if r.status_code >= 500:  # uvicorn closes the connection after an error
                self.client.close()
                self.client = self._client()
            return Answer(r.status_code, r.text, r.content, dict(r.headers))
        return Answer(None, f"no answer: {error!r}")

    def check(self, case: HttpCase) -> list[str]:
        """Problems with the answer to ``case``: a 5xx or none, a wrong answer to a valid
        request; with the request and the server log's record. Raises :class:`ServerBroken`
        if the server exited or stopped answering."""
        answer = self.send(case)
        problems = []
        if answer.bad:
            problems.append(f"answered {answer.status}: {answer.text[:300]}")
        elif case.expect is not None:
            if answer.status != 200:
                problems.append(f"a valid request answered {answer.status}: {answer.text[:300]}")
            else:
                try:
                    version, outputs = http_outputs(answer)
                except (ValueError, KeyError, TypeError, struct.error) as exc:
                    problems.append(f"malformed answer ({exc!r}): {answer.content[:300]!r}")
                else:
                    problems += case.expect.check(version, outputs)
        return _finish(self.server, answer, problems, case.describe())


def http_outputs(answer: Answer) -> tuple[str, dict[str, Tensor]]:
    """The answering version and the outputs of a 200 infer answer (JSON or binary)."""
    length = answer.headers.get("inference-header-content-length")
    content = answer.content
    head, tail = (content[: int(length)], content[int(length) :]) if length else (content, b"")
    doc = orjson.loads(head)
    outputs, offset = {}, 0
    for out in doc["outputs"]:
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            values = decode_raw(out["datatype"], tail[offset : offset + size])
            offset += size
        else:
            values = _flatten(out["data"])
        outputs[out["name"]] = Tensor(out["name"], out["datatype"], out["shape"], values)
    if offset != len(tail):
        raise ValueError(f"{len(tail) - offset} bytes of binary output belong to no output")
    return doc["model_version"], outputs


# ---- gRPC -------------------------------------------------------------------------------

SERVICE = "inference.GRPCInferenceService"
#: Typed ``contents`` fields and the values each can carry.
CONTENTS = {
    "bool_contents": st.booleans(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": st.integers(-(2**63), 2**63 - 1),
    "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(0, 2**64 - 1),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": st.binary(max_size=8),
}
TYPED_FIELD = CONTENTS_FIELD  # v2 datatype → the InferTensorContents field carrying it
#: RPCs that garbage bytes are sent to (not load/unload: a lucky parse could unload a model).
RAW_METHODS = ["ModelInfer", "ModelInfer", "ModelMetadata", "ModelReady", "ServerMetadata",
               "ServerLive", "ServerReady", "RepositoryIndex"]  # fmt: skip


@dataclass
class GrpcCase:
    method: str
    payload: bytes
    expect: InferCall | None = None
    note: str = ""

    def __repr__(self) -> str:
        return f"GrpcCase({self.method}, {len(self.payload)}-byte payload, {self.note})"

    def describe(self) -> str:
        payload = self.payload if len(self.payload) <= 3000 else self.payload[:3000] + b"..."
        text = ""
        if self.method == "ModelInfer":
            try:
                message = pb.ModelInferRequest.FromString(self.payload)
                text = f"\nas a message: {str(message)[:3000]}"
            except Exception:  # not a message: the bytes say it all
                text = "\n(not a valid ModelInferRequest)"
        return f"/{SERVICE}/{self.method} ({self.note}) payload: {payload!r}{text}"


def grpc_message(call: InferCall, raw: bool) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=call.model, model_version=call.version or "")
    for tensor in call.inputs:
        item = message.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        if raw:
            message.raw_input_contents.append(tensor.raw())
        else:
            values = tensor.values
            if tensor.datatype == "BYTES":
                values = [v.encode() for v in values]
            getattr(item.contents, TYPED_FIELD[tensor.datatype]).extend(values)
    for name in call.outputs or []:
        message.outputs.add(name=name)
    return message


def _parameter(draw) -> pb.InferParameter:
    choice = draw(st.sampled_from(["bool", "int64", "string", "double", "uint64"]))
    value = {
        "bool": st.booleans(),
        "int64": st.integers(-(2**63), 2**63 - 1),
        "string": st.text(max_size=8),
        "double": st.floats(),
        "uint64": st.integers(0, 2**64 - 1),
    }[choice]
    return pb.InferParameter(**{f"{choice}_param": draw(value)})


PARAMETER_KEYS = st.sampled_from(
    ["session", "binary_data_size", "binary_data_output", "priority", "timeout", "sequence_id"]
) | st.text(max_size=6)


def _grpc_shape(draw) -> list[int]:
    return draw(
        st.one_of(
            st.lists(st.integers(0, 5), max_size=4),
            st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4),
            st.lists(st.sampled_from([0, 1, 1, 1]), min_size=60, max_size=100),
            st.lists(st.sampled_from([2**31, 2**32, 2**62, 2**63 - 1]), min_size=1, max_size=3),
        )
    )


GRPC_MUTATIONS = ("raw_size", "raw_count", "typed_mismatch", "datatype", "shape", "parameters",
                  "input_parameters", "output_parameters", "drop_input", "duplicate_input",
                  "extra_input", "outputs", "model", "both", "id")  # fmt: skip


def mutate_message(draw, message: pb.ModelInferRequest) -> pb.ModelInferRequest:
    """Apply 1-3 random mutations to a copy of ``message``."""
    m = pb.ModelInferRequest()
    m.CopyFrom(message)
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(GRPC_MUTATIONS))
        tensor = draw(st.sampled_from(list(m.inputs))) if m.inputs else None
        index = list(m.inputs).index(tensor) if tensor is not None else 0
        if what == "raw_size" and m.raw_input_contents:
            i = draw(st.integers(0, len(m.raw_input_contents) - 1))
            raw = m.raw_input_contents[i]
            cut = draw(st.integers(-len(raw), 9))
            m.raw_input_contents[i] = raw + b"\x01" * cut if cut > 0 else raw[: len(raw) + cut]
        elif what == "raw_count":
            if m.raw_input_contents and draw(st.booleans()):
                del m.raw_input_contents[-1]
            else:
                m.raw_input_contents.append(draw(st.binary(max_size=16)))
        elif what == "typed_mismatch" and tensor is not None:
            tensor.ClearField("contents")
            name = draw(st.sampled_from(sorted(CONTENTS)))
            count = draw(st.sampled_from([0, 1, 4, 7]))
            values = draw(st.lists(CONTENTS[name], min_size=count, max_size=count))
            getattr(tensor.contents, name).extend(values)
            if draw(st.booleans()):
                del m.raw_input_contents[:]
        elif what == "datatype" and tensor is not None:
            tensor.datatype = draw(st.sampled_from(DATATYPE_NAMES + JUNK_DATATYPES))
        elif what == "shape" and tensor is not None:
            if draw(st.booleans()):  # as many elements, more dimensions
                tensor.shape.extend([1] * draw(st.sampled_from([1, 62, 63, 64, 100])))
            else:
                del tensor.shape[:]
                tensor.shape.extend(_grpc_shape(draw))
        elif what == "parameters":
            m.parameters[draw(PARAMETER_KEYS)].CopyFrom(_parameter(draw))
        elif what == "input_parameters" and tensor is not None:
            tensor.parameters[draw(PARAMETER_KEYS)].CopyFrom(_parameter(draw))
        elif what == "output_parameters":
            out = m.outputs.add(name=draw(st.sampled_from(["y", "out_FP32", "z", ""])))
            out.parameters[draw(PARAMETER_KEYS)].CopyFrom(_parameter(draw))
        elif what == "drop_input" and tensor is not None:
            del m.inputs[index]
            if index < len(m.raw_input_contents):
                del m.raw_input_contents[index]
        elif what == "duplicate_input" and tensor is not None:
            m.inputs.add().CopyFrom(tensor)
            if index < len(m.raw_input_contents):
                m.raw_input_contents.append(m.raw_input_contents[index])
        elif what == "extra_input":
            extra = m.inputs.add(name=draw(st.text(max_size=6)),
                                 datatype=draw(st.sampled_from(DATATYPE_NAMES)))  # fmt: skip
            extra.shape.extend(_grpc_shape(draw))
            if m.raw_input_contents:
                m.raw_input_contents.append(draw(st.binary(max_size=32)))
        elif what == "outputs":
            for name in draw(st.lists(st.text(max_size=6), max_size=3)):
                m.outputs.add(name=name)
        elif what == "model":
            if draw(st.booleans()):
                m.model_name = draw(names)
            m.model_version = draw(version_names) or ""
        elif what == "both" and tensor is not None:  # typed contents next to raw ones
            field_name = draw(st.sampled_from(sorted(CONTENTS)))
            getattr(tensor.contents, field_name).extend(
                draw(st.lists(CONTENTS[field_name], min_size=1, max_size=4))
            )
            if not m.raw_input_contents:
                m.raw_input_contents.extend(t.SerializeToString()[:4] for t in m.inputs)
        elif what == "id":
            m.id = draw(st.text(max_size=20) | st.text(min_size=2000, max_size=2000))
    return m


@st.composite
def grpc_message_cases(draw) -> GrpcCase:
    """ModelInfer messages: valid (typed or raw contents; the answer is checked) or mutated."""
    call = draw(valid_calls())
    typed_ok = all(t.datatype in TYPED_FIELD for t in call.inputs)
    raw = not typed_ok or draw(st.booleans())
    message = grpc_message(call, raw)
    if draw(st.integers(0, 4)) == 0:
        return GrpcCase("ModelInfer", message.SerializeToString(), call, "valid")
    mutated = mutate_message(draw, message)
    return GrpcCase("ModelInfer", mutated.SerializeToString(), None, "mutated")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@st.composite
def grpc_bytes_cases(draw) -> GrpcCase:
    """Bytes that are not a valid protobuf message (or only by luck), to several RPCs."""
    method = draw(st.sampled_from(RAW_METHODS))
    call = draw(valid_calls())
    valid = grpc_message(call, raw=True).SerializeToString()
    kind = draw(st.sampled_from(["random", "flip", "truncate", "append", "length", "utf8",
                                 "wire_type", "unknown", "group"]))  # fmt: skip
    if kind == "random":
        payload = draw(st.binary(min_size=1, max_size=200))
    elif kind == "flip":
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        payload = bytes(data)
    elif kind == "truncate":
        payload = valid[: draw(st.integers(1, max(1, len(valid) - 1)))]
    elif kind == "append":
        payload = valid + draw(st.binary(min_size=1, max_size=16))
    elif kind == "length":  # a length-delimited field longer than the message
        payload = b"\x2a" + _varint(draw(st.integers(len(valid), 2**40))) + valid
    elif kind == "utf8":  # string fields (model_name, id) holding bytes that are not UTF-8
        field_tag = draw(st.sampled_from([b"\x0a", b"\x12", b"\x1a"]))
        junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf"]))
        payload = field_tag + _varint(len(junk)) + junk + valid
    elif kind == "wire_type":  # wire types 6 and 7 do not exist
        payload = draw(st.sampled_from([b"\x0e", b"\x0f", b"\x2e", b"\x2f"])) + valid
    elif kind == "unknown":  # fields this message does not have (legal: they are skipped)
        number = draw(st.integers(16, 2**29 - 1))
        junk = draw(st.binary(max_size=16))
        payload = valid + _varint(number << 3 | 2) + _varint(len(junk)) + junk
    else:  # a group that starts and never ends, or ends without starting
        payload = valid + draw(st.sampled_from([_varint(50 << 3 | 3), _varint(50 << 3 | 4)]))
    return GrpcCase(method, payload, None, f"bytes {kind}")


def _identity(b: bytes) -> bytes:
    return b


class GrpcProbe:
    """Sends :class:`GrpcCase` s as generic unary calls (bytes in, bytes out)."""

    def __init__(self, server: ServerProcess, timeout: float = 30) -> None:
        self.server, self.timeout = server, timeout
        self.channel = grpc.insecure_channel(
            server.grpc_hostport,
            options=[("grpc.max_send_message_length", -1),
                     ("grpc.max_receive_message_length", -1)],
        )  # fmt: skip
        self._calls: dict[str, Callable] = {}

    def close(self) -> None:
        self.channel.close()

    def send(self, case: GrpcCase) -> Answer:
        call = self._calls.get(case.method)
        if call is None:
            call = self._calls[case.method] = self.channel.unary_unary(
                f"/{SERVICE}/{case.method}",
                request_serializer=_identity,
                response_deserializer=_identity,
            )
        try:
            content = call(case.payload, timeout=self.timeout)
        except grpc.RpcError as exc:
            return Answer(exc.code().name, exc.details() or "")
        return Answer("OK", "", content)

    def check(self, case: GrpcCase) -> list[str]:
        """Problems with the answer to ``case``: ``INTERNAL``, ``UNKNOWN`` or no answer, a wrong
        answer to a valid request; with the request and the server log's record. Raises
        :class:`ServerBroken` if the server exited or stopped answering."""
        answer = self.send(case)
        problems = []
        if answer.bad:
            problems.append(f"answered {answer.status}: {answer.text[:300]}")
        elif case.expect is not None:
            if answer.status != "OK":
                problems.append(f"a valid request answered {answer.status}: {answer.text[:300]}")
            else:
                try:
                    version, outputs = grpc_outputs(answer.content)
                except Exception as exc:  # any failure here is a finding
                    problems.append(f"malformed answer ({exc!r}): {answer.content[:300]!r}")
                else:
                    problems += case.expect.check(version, outputs)
        return _finish(self.server, answer, problems, case.describe())


def grpc_outputs(content: bytes) -> tuple[str, dict[str, Tensor]]:
    response = pb.ModelInferResponse.FromString(content)
    if len(response.raw_output_contents) != len(response.outputs):
        raise ValueError("raw_output_contents and outputs differ in length")
    outputs = {
        out.name: Tensor(out.name, out.datatype, list(out.shape), decode_raw(out.datatype, raw))
        for out, raw in zip(response.outputs, response.raw_output_contents, strict=True)
    }
    return response.model_version, outputs


# ---- the admin API ----------------------------------------------------------------------

ADMIN_MODELS = ("affine", "m", "spare", "types")
LABELS = ["stable", "canary", "candidate", "x", "1", "01", "²", "a b", "ü", "-", ".", "…"]
ACTIONS = ["pause", "resume", "promote", "abort"]


def admin_operations(schema) -> list:
    """One hypothesis strategy per admin operation and generation mode (negative only where
    there are declared parameters or a body to make invalid)."""
    from schemathesis import GenerationMode

    strategies = []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategies.append(operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
        if len(operation.query) or operation.body:
            strategies.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    return strategies


#: ``?wait=`` for an action that names none: the default (30 s; 300 s to start a rollout)
#: would make each action that cannot take effect (a rollback during a rollout) cost that long.
ACTION_WAIT = "1s"


@st.composite
def admin_cases(draw, operations: list):
    """A schemathesis case for one admin operation; its path parameters usually name a real
    model (and label, rollout action) and its body a real version, so that pins, rollbacks,
    labels and rollouts take effect instead of all ending in 404. An action's ``wait`` is
    at most 2 s (``1s`` when it has none or a longer one, see :data:`ACTION_WAIT`), so that
    every answer comes within seconds unless the server is stuck."""
    case = draw(draw(st.sampled_from(operations)))
    params = case.path_parameters
    if params:
        if "model" in params and draw(st.integers(0, 4)):
            params["model"] = draw(st.sampled_from(ADMIN_MODELS))
        if "label" in params and draw(st.booleans()):
            params["label"] = quote(draw(st.sampled_from(LABELS)), safe="")
        if "action" in params and draw(st.integers(0, 3)):
            params["action"] = draw(st.sampled_from(ACTIONS))
    if isinstance(case.body, dict) and "version" in case.body and draw(st.integers(0, 2)):
        case.body["version"] = draw(st.integers(1, 4))
    if case.method != "GET":
        query = dict(case.query or {})
        wait = query.get("wait")
        query["wait"] = _short_wait(wait) if isinstance(wait, str) else ACTION_WAIT
        case.query = query
    return case


class AdminProbe:
    """Sends schemathesis cases to a server; a 5xx or no answer is a problem."""

    def __init__(self, server: ServerProcess, timeout: float = 30) -> None:
        self.server, self.timeout = server, timeout
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    def send(self, case) -> Answer:
        error: Exception | None = None
        for _ in range(2):
            try:
                r = case.call(base_url=self.server.url, session=self.session,
                              timeout=self.timeout)  # fmt: skip
            except requests.Timeout as exc:
                return Answer(None, f"no answer within {self.timeout} s ({exc!r})")
            except requests.ConnectionError as exc:
                error = exc
                self.session.close()
                self.session = requests.Session()
                continue
            if r.status_code >= 500:
                self.session.close()
                self.session = requests.Session()
            return Answer(r.status_code, r.text, r.content, dict(r.headers))
        return Answer(None, f"no answer: {error!r}")

    def check(self, case) -> list[str]:
        """Problems with the answer to ``case`` (a 5xx or none), with the request as curl."""
        answer = self.send(case)
        problems = []
        if answer.bad:
            problems.append(f"answered {answer.status}: {answer.text[:300]}")
        request = ""
        if problems or server_gone(self.server) or answer.status is None:
            curl = case.as_curl_command(base_url=self.server.url)
            request = f"({case.operation.label}) {curl}"
        return _finish(self.server, answer, problems, request)


def _short_wait(text: str) -> str:
    """A ``wait`` the server would read as more than 2 s becomes ``1s`` (as many of the
    number-like texts are valid durations, some of an hour)."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        return text
    return text if seconds <= 2 else ACTION_WAIT


@st.composite
def admin_value_cases(draw) -> HttpCase:
    """Admin requests whose query values look like numbers or durations (``limit``,
    ``before``, ``wait``) and whose bodies hold any JSON: what the OpenAPI description leaves
    out (it gives ``limit`` no minimum and ``wait`` no pattern)."""
    model = draw(st.sampled_from(ADMIN_MODELS) | names)
    m = quote(model, safe="")
    kind = draw(st.sampled_from(["events", "audit", "pin", "events", "audit", "unpin", "label",
                                 "rollback", "rollout", "action"]))  # fmt: skip
    query: dict[str, str] = {}
    body = b""
    if kind == "events":
        method, path = "GET", "/admin/events"
        query["limit"] = draw(numberish | digit_traps)
        if draw(st.booleans()):
            query["model"] = model
    elif kind == "audit":
        method, path = "GET", "/admin/audit"
        for key in ("limit", "before"):
            if draw(st.booleans()):
                query[key] = draw(numberish | digit_traps)
    else:
        label = quote(draw(st.sampled_from(LABELS)), safe="")
        method, path = {
            "pin": ("POST", f"/admin/models/{m}/pin"),
            "unpin": ("DELETE", f"/admin/models/{m}/pin"),
            "label": ("PUT", f"/admin/models/{m}/labels/{label}"),
            "rollback": ("POST", f"/admin/models/{m}/rollback"),
            "rollout": ("POST", f"/admin/models/{m}/rollout"),
            "action": ("POST", f"/admin/models/{m}/rollout/{draw(st.sampled_from(ACTIONS))}"),
        }[kind]
        query["wait"] = draw(durations.map(_short_wait))
        if kind in ("pin", "label", "rollout"):
            version = draw(st.integers(1, 4) | json_values | numberish)
            doc: dict = {"version": version}
            if kind == "rollout":
                steps = st.lists(st.floats(0, 100) | json_scalars, max_size=4)
                doc["steps"] = draw(st.none() | steps.map(lambda s: [*s, 100]))
                doc["interval"] = draw(st.none() | st.floats(0, 1e308) | json_scalars)
            body = json.dumps(doc).encode() if draw(st.integers(0, 5)) else draw(garbage_bodies())
    if query:
        path += "?" + urlencode(query)
    return HttpCase(method, path, body, {}, None, f"admin {kind}")


# ---- good traffic -----------------------------------------------------------------------


class GoodTraffic:
    """Valid requests to :data:`GOOD_MODEL`, one after another in a background thread, over
    HTTP (and gRPC if asked); every answer must be 200 (OK) with y = x + the version that says
    it answered. ``failed`` lists what went wrong (the first 20)."""

    def __init__(self, server: ServerProcess, protocols=("http",), pause: float = 0.005) -> None:
        self.server, self.protocols, self.pause = server, protocols, pause
        self.sent = 0
        self.failures = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="good-traffic", daemon=True)
        self._rng = np.random.default_rng()

    def __enter__(self) -> GoodTraffic:
        """Start, and return once the first good request has been answered (or 30 s)."""
        self._thread.start()
        deadline = time.monotonic() + 30
        while self.sent == 0 and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> GoodTraffic:
        self._stop.set()
        self._thread.join(60)
        return self

    def _fail(self, what: str) -> None:
        self.failures += 1
        if len(self.failed) < 20:
            self.failed.append(what)

    def _run(self) -> None:
        http = httpx.Client(base_url=self.server.url, timeout=30)
        channel = grpc.insecure_channel(self.server.grpc_hostport)
        infer = channel.unary_unary(
            f"/{SERVICE}/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        try:
            while not self._stop.is_set():
                for protocol in self.protocols:
                    x = self._rng.standard_normal(4).astype(np.float32)
                    try:
                        what = self._http(http, x) if protocol == "http" else self._grpc(infer, x)
                    except Exception as exc:  # every failure is counted
                        what = f"{protocol}: {exc!r}"
                    self.sent += 1
                    if what:
                        self._fail(what)
                time.sleep(self.pause)
        finally:
            http.close()
            channel.close()

    @staticmethod
    def _right(version: str, y: np.ndarray, x: np.ndarray) -> bool:
        offset = OFFSETS[GOOD_MODEL].get(version)
        return offset is not None and y.shape == (4,) and np.allclose(y, x + offset, atol=1e-5)

    def _http(self, http: httpx.Client, x: np.ndarray) -> str | None:
        tensor = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x.tolist()}
        r = http.post(f"/v2/models/{GOOD_MODEL}/infer", content=orjson.dumps({"inputs": [tensor]}))
        if r.status_code != 200:
            return f"http: {r.status_code} {r.text[:300]}"
        doc = r.json()
        y = np.array(doc["outputs"][0]["data"], np.float32)
        if not self._right(doc["model_version"], y, x):
            return f"http: wrong answer {r.text[:300]} for x = {x.tolist()}"
        return None

    def _grpc(self, infer, x: np.ndarray) -> str | None:
        message = pb.ModelInferRequest(model_name=GOOD_MODEL)
        message.inputs.add(name="x", datatype="FP32", shape=[1, 4])
        message.raw_input_contents.append(x.astype("<f4").tobytes())
        try:
            response = infer(message, timeout=30)
        except grpc.RpcError as exc:
            return f"grpc: {exc.code().name} {exc.details()}"
        y = np.frombuffer(response.raw_output_contents[0], "<f4")
        if not self._right(response.model_version, y, x):
            return f"grpc: wrong answer {y.tolist()} from v{response.model_version} for {x}"
        return None

    def verdict(self) -> list[str]:
        """What was wrong with the good traffic: none sent, or any failed."""
        if self.sent == 0:
            return ["no good request was sent"]
        if self.failures:
            return [f"{self.failures} of {self.sent} good requests failed:", *self.failed]
        return []
