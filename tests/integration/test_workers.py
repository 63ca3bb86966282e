"""``baton serve --workers 2`` end to end: a node of two worker processes on shared ports.

Swaps under load are one event for the node (no request sent after the switch is answered by
the old version, on any worker); a canary's split stays exact across workers; a worker killed
with -9 costs only its requests in flight and comes back on the current version; metrics and
readiness speak for the whole node.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import numpy as np
import orjson
import psutil
import pytest
import tritonclient.grpc as grpcclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from baton.dev.demo import affine_model, write_version

from .conftest import wait_for

WORKERS = ("--workers", "2")
CLIENTS = 6
REQUESTS_PER_CONNECTION = 25  # clients reconnect, so connections spread over both workers


class Load:
    """Clients sending unversioned requests; each answer is checked against ``x + version``
    (demo models: version v adds v) and logged with the time it was sent."""

    def __init__(self, url: str, clients: int = CLIENTS) -> None:
        self.url = url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[tuple[float, int]] = []  # (sent at, version that answered)
        self.failures: list[tuple[float, str]] = []
        self.wrong: list[str] = []
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(clients)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _client(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not self.stop.is_set():
            with httpx.Client(base_url=self.url, timeout=30) as http:
                for _ in range(REQUESTS_PER_CONNECTION):
                    if self.stop.is_set():
                        return
                    x = rng.standard_normal(4).astype(np.float32)
                    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                        "data": x.tolist()}]}  # fmt: skip
                    sent = time.monotonic()
                    try:
                        r = http.post("/v2/models/m/infer", content=orjson.dumps(body))
                    except httpx.HTTPError as exc:
                        with self.lock:
                            self.failures.append((sent, f"transport: {exc!r}"))
                        break  # a new connection
                    self._check(sent, x, r)

    def _check(self, sent: float, x: np.ndarray, r: httpx.Response) -> None:
        with self.lock:
            if r.status_code != 200:
                self.failures.append((sent, f"{r.status_code}: {r.text}"))
                return
            answer = r.json()
            version = int(answer["model_version"])
            y = np.array(answer["outputs"][0]["data"], np.float32)
            if not np.allclose(y, x + version, atol=1e-5):
                self.wrong.append(f"v{version}: {x.tolist()} → {y.tolist()}")
            self.answers.append((sent, version))

    def count(self) -> int:
        with self.lock:
            return len(self.answers)


def default_version(url: str) -> int | None:
    models = httpx.get(f"{url}/admin/models", timeout=10).json()
    return next(m["default_version"] for m in models if m["name"] == "m")


def worker_pids(server) -> list[int]:
    """The worker processes: the children of multiprocessing's fork server (which is the
    supervisor's child, as is its resource tracker)."""
    pids = []
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if child.ppid() != server.process.pid and child.status() != psutil.STATUS_ZOMBIE:
                pids.append(child.pid)
        except psutil.Error:  # gone meanwhile
            continue
    return sorted(pids)


def requests_total(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        if family.name == "baton_requests"
        for s in family.samples
        if s.name == "baton_requests_total" and s.labels.get("outcome") == "ok"
    )


def test_swaps_under_load_are_one_event_for_the_node(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    server = server_factory(root, args=WORKERS)
    assert len(worker_pids(server)) == 2
    switched: dict[int, float] = {}  # version → when the admin API first showed it default
    with Load(server.url) as load:
        wait_for(lambda: load.count() > 100, 30, "traffic")
        for version in range(2, 8):
            write_version(root / "m", version, affine_model(float(version)))
            wait_for(lambda v=version: default_version(server.url) == v, 30, f"v{version}")
            switched[version] = time.monotonic()
            seen = load.count()
            wait_for(lambda s=seen: load.count() > s + 100, 30, "traffic after the swap")
    assert not load.failures, load.failures[:5]
    assert not load.wrong, load.wrong[:5]
    stale = [
        (sent, version, newest)
        for sent, version in load.answers
        for newest, at in switched.items()
        if sent > at and version < newest
    ]
    assert not stale, f"{len(stale)} requests sent after a switch got an older version: {stale[:5]}"
    versions = {v for _, v in load.answers}
    assert versions == set(range(1, 8)), versions
    # every worker answered: the node's metrics add up the workers' counters
    assert requests_total(server.url) >= len(load.answers)


def test_canary_split_is_exact_across_workers(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    (root / "m" / "model.yaml").write_text(
        "rollout: {mode: canary, steps: [10, 100], interval: 600}\n"
    )
    server = server_factory(root, args=WORKERS)
    write_version(root / "m", 2, affine_model(2.0))  # a canary at 10 % for ten minutes

    def at_ten_percent() -> bool:
        rollout = httpx.get(f"{server.url}/admin/models/m/rollout").json()["rollout"]
        return rollout is not None and abs(rollout["weight"] - 0.10) < 1e-9

    wait_for(at_ten_percent, 60, "the canary at 10 %")
    with Load(server.url) as load:
        wait_for(lambda: load.count() >= 3000, 120, "3,000 answers")
    assert not load.failures and not load.wrong
    share = sum(1 for _, v in load.answers if v == 2) / len(load.answers)
    assert abs(share - 0.10) <= 0.02, f"candidate share {share:.3f} over {len(load.answers)}"


def test_a_killed_worker_costs_only_its_requests_in_flight(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    server = server_factory(root, args=WORKERS)
    before = worker_pids(server)
    with Load(server.url) as load:
        wait_for(lambda: load.count() > 300, 30, "traffic")
        killed_at = time.monotonic()
        os.kill(before[0], signal.SIGKILL)
        wait_for(lambda: len(set(worker_pids(server)) - set(before)) == 1, 60, "a new worker")
        wait_for(lambda: httpx.get(f"{server.url}/v2/health/ready").status_code == 200, 60,
                 "the node ready again")  # fmt: skip
        restarted = time.monotonic()
        write_version(root / "m", 2, affine_model(2.0))  # the restarted worker takes swaps too
        wait_for(lambda: default_version(server.url) == 2, 30, "v2")
        switched = time.monotonic()
        seen = load.count()
        wait_for(lambda: load.count() > seen + 300, 30, "traffic after the restart")
    # At most one request per client was in flight on the killed worker; each may fail once.
    failed = [f for f in load.failures if f[0] <= restarted]
    print(f"requests failed by the kill: {len(failed)} of {len(load.answers) + len(failed)}")
    assert len(failed) <= CLIENTS, load.failures
    assert all(f[1].startswith("transport") for f in failed), failed
    # ... sent just before the kill (in flight when it came), none once the node was ready
    assert all(killed_at - 5 < sent < restarted for sent, _ in load.failures), load.failures
    assert not load.wrong
    late = [v for sent, v in load.answers if sent > switched]
    assert late and set(late) == {2}, set(late)
    events = httpx.get(f"{server.url}/admin/events", timeout=10).json()
    exited = [e for e in events if e["kind"] == "worker" and e["state"] == "exited"]
    assert [e["data"]["exitcode"] for e in exited] == [-signal.SIGKILL], exited


def test_node_readiness_and_repository_api_through_a_worker(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    server = server_factory(root, args=WORKERS)
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}
    meta = httpx.get(f"{server.url}/v2/models/m").json()
    assert meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
    assert httpx.get(f"{server.url}/v2/models/nope").status_code == 404
    index = httpx.post(f"{server.url}/v2/repository/index", json={}).json()
    assert [(r["name"], r["version"], r["state"]) for r in index] == [("m", "1", "SERVING")]
    bad = httpx.post(f"{server.url}/v2/models/m/infer", content=b"{not json")
    assert bad.status_code == 400 and "error" in bad.json()
    # gRPC: the workers share its port too; readiness and the repository are the node's
    grpc = grpcclient.InferenceServerClient(server.grpc_hostport)
    assert grpc.is_server_ready() and grpc.is_model_ready("m")
    x = grpcclient.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.full((1, 4), 0.5, np.float32))
    answer = grpc.infer("m", [x])
    assert answer.as_numpy("y").tolist() == [[1.5] * 4]
    assert [m.name for m in grpc.get_model_repository_index().models] == ["m"]
    with pytest.raises(InferenceServerException, match="not in the model repository"):
        grpc.load_model("nope")


def node_pss(server) -> int:
    """The node's memory: proportional set sizes summed over the server's processes (a page
    shared by k of them counts 1/k in each)."""
    total = 0
    root = psutil.Process(server.process.pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_full_info().pss
        except psutil.Error:
            continue
    return total


def test_a_swap_peaks_at_one_more_model_not_one_per_worker(server_factory, tmp_path):
    root = tmp_path / "repo"
    floats = 15_000_000  # a 60 MB model
    write_version(root / "m", 1, affine_model(1.0, padding_floats=floats))
    size = (root / "m" / "1" / "model.onnx").stat().st_size
    server = server_factory(root, args=WORKERS)
    time.sleep(1.0)
    serving = node_pss(server)
    peak, stop = serving, threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, node_pss(server))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        write_version(root / "m", 2, affine_model(2.0, padding_floats=floats))
        wait_for(lambda: default_version(server.url) == 2, 60, "v2")
        time.sleep(1.0)  # v1 drains and unloads
    finally:
        stop.set()
        sampler.join()
    bound = 1.10 * (serving + size)
    print(f"serving {serving / 2**20:.0f} MiB, model {size / 2**20:.0f} MiB, "
          f"peak {peak / 2**20:.0f} MiB, bound {bound / 2**20:.0f} MiB")  # fmt: skip
    assert peak <= bound
