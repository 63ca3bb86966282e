"""The core promise, end to end: concurrent clients keep sending while 20 new versions are
dropped in (one every ~0.5 s) along with a corrupt, a half-written, a slowly copied and an
incompatible one. Zero failed requests; every answer is the one its model_version computes;
the bad versions never answer."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import onnx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from baton.dev.demo import affine_model, write_version

from .conftest import wait_for

CLIENTS = 4
CORRUPT, HALF_WRITTEN, INCOMPATIBLE = 5, 9, 14
SLOW_COPY = 18
LAST = 24  # versions 1..24: 20 good drops after version 1, plus 3 bad ones


class Load:
    def __init__(self, url: str):
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.mismatches: list[str] = []
        self.versions: dict[str, int] = {}

    def client(self, seed: int):
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self.stop.is_set():
                x = rng.standard_normal((2, 4)).astype(np.float32)
                body = {
                    "inputs": [
                        {
                            "name": "x",
                            "datatype": "FP32",
                            "shape": [2, 4],
                            "data": x.reshape(-1).tolist(),
                        }
                    ]
                }
                try:
                    r = http.post("/v2/models/m/infer", content=orjson.dumps(body))
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failures.append(f"transport: {exc!r}")
                    continue
                with self.lock:
                    if r.status_code != 200:
                        self.failures.append(f"{r.status_code}: {r.text}")
                        continue
                    doc = r.json()
                    version = doc["model_version"]
                    y = np.asarray(doc["outputs"][0]["data"], np.float32).reshape(2, 4)
                    if not np.allclose(y, x + float(version), atol=1e-5):
                        self.mismatches.append(f"version {version} answered {y} for {x}")
                    self.ok += 1
                    self.versions[version] = self.versions.get(version, 0) + 1


def write_slowly(version_dir, data: bytes, chunks: int = 8, pause: float = 0.1):
    """Copy a file in non-atomically, a chunk at a time, faster than the poll interval."""
    version_dir.mkdir(parents=True)
    step = -(-len(data) // chunks)
    with open(version_dir / "model.onnx", "wb") as fh:
        for i in range(0, len(data), step):
            fh.write(data[i : i + step])
            fh.flush()
            time.sleep(pause)


def test_twenty_swaps_under_load_zero_failures(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    server = server_factory(root, poll_interval=0.2)
    load = Load(server.url)
    threads = [threading.Thread(target=load.client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        for v in range(2, LAST + 1):
            model_dir = root / "m"
            if v == CORRUPT:
                (model_dir / str(v)).mkdir()
                (model_dir / str(v) / "model.onnx").write_bytes(b"\x08\x07garbage" * 50)
            elif v == HALF_WRITTEN:
                data = affine_model(float(v)).SerializeToString()
                (model_dir / str(v)).mkdir()
                (model_dir / str(v) / "model.onnx").write_bytes(data[: len(data) // 2])
            elif v == INCOMPATIBLE:
                write_version(model_dir, v, affine_model(float(v), width=5))
            elif v == SLOW_COPY:
                write_slowly(model_dir / str(v), affine_model(float(v)).SerializeToString())
            else:
                write_version(model_dir, v, affine_model(float(v)))
            time.sleep(0.5)
        wait_for(lambda: load.versions.get(str(LAST), 0) > 20, timeout=30)
        time.sleep(0.5)
    finally:
        load.stop.set()
        for t in threads:
            t.join(30)

    assert load.failures == [], load.failures[:5]
    assert load.mismatches == [], load.mismatches[:5]
    bad = {str(CORRUPT), str(HALF_WRITTEN), str(INCOMPATIBLE)}
    assert not bad & set(load.versions), load.versions
    good_seen = set(load.versions) - {"1"}
    assert len(good_seen) >= 15, load.versions  # traffic really moved across the swaps
    assert str(SLOW_COPY) in load.versions and str(LAST) in load.versions
    assert load.ok > 200

    model = httpx.get(f"{server.url}/admin/models/m").json()
    states = {v["version"]: (v["state"], v["reason"]) for v in model["versions"]}
    assert states[CORRUPT] == ("FAILED", "load_error")
    assert states[HALF_WRITTEN] == ("FAILED", "load_error")
    assert states[INCOMPATIBLE] == ("FAILED", "incompatible_signature")
    assert states[LAST] == ("SERVING", None)
    assert all(
        s == "UNLOADED"
        for v, (s, _) in states.items()
        if v not in (CORRUPT, HALF_WRITTEN, INCOMPATIBLE, LAST)
    ), states
    # the slowly copied version was only ever loaded complete: it never failed
    events = httpx.get(f"{server.url}/admin/events", params={"limit": 1000}).json()
    assert not [e for e in events if e["version"] == SLOW_COPY and e["state"] == "FAILED"]
    samples = [
        s
        for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)
        for s in family.samples
        if s.name == "baton_requests_total"
    ]
    # series of long-retired versions are dropped (bounded cardinality); the rest add up
    assert {s.labels["version"] for s in samples} <= {str(v) for v in range(LAST - 8, LAST + 1)}
    kept = sum(n for v, n in load.versions.items() if int(v) >= LAST - 8)
    assert sum(s.value for s in samples if s.labels["outcome"] == "ok") <= kept
    assert sum(s.value for s in samples if s.labels["outcome"] == "ok") > 0
    assert sum(s.value for s in samples if s.labels["outcome"] == "error") == 0
    onnx.checker.check_model(affine_model(1.0))  # the generator itself makes valid models
