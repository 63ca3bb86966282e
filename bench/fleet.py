"""A fleet rollout on loopback: how long each wave takes to converge, against its floor.

    python bench/fleet.py [--nodes 5] [--model-mb 32] [--waves 1,40%,100%] [--max-loading 5]

Starts etcd, moto's S3 stand-in and ``--nodes`` Baton nodes (zones alternate), with versions 1
and 2 of a model of ``--model-mb`` MB (y = x + version) in S3 and version 1 as the fleet's
target. Under closed-loop load against every node, the rollout to version 2 starts (what
``baton fleet rollout start --to 2 --wave-interval 0s`` does, called in-process so the CLI's
start-up is not counted); the bench polls the fleet (etcd) every 50 ms and reports, per
wave, the time from the wave's start to every node of it serving version 2's digest.

The floor is what one node cannot avoid: the watch latency (an etcd put seen by a watcher)
plus the first wave's node's own time from discovering version 2 to READY (download, verify,
load, warm up; from its audit log — it loads alone). For reference, the parts are also
measured alone in the bench process (download with boto3, SHA-256, a plain ONNX Runtime
session). Target: every wave converges within 2 s + one node's download and load time, with
0 failed requests. Both readings are printed: against the slowest node's own load in that wave
(nodes loading at once share this machine's cores), and against the first wave's solo load.

S3 cost: the S3 stand-in counts requests while the fleet is idle (nodes list every
``--s3-interval``); the table gives requests per listing per node, and per hour per node at
the default interval (30 s).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.artifacts.manifest import MANIFEST
from baton.artifacts.publish import publish_to_s3
from baton.dev.cluster import Etcd, Node, S3Server
from baton.dev.demo import affine_model
from baton.fleet.operations import RolloutOptions, fleet_state, set_target, start_rollout
from baton.fleet.rollout import FleetGates
from baton.fleet.store import FleetStore
from bench.common import machine, stamp, table

FLEET = "bench"
REPOSITORY = "s3://models/repo"
DEFAULT_INTERVAL = 30.0  # baton serve's default --s3-interval


class RequestCounter(logging.Handler):
    """Counts the requests moto's server logs (one werkzeug record per request)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


class Load:
    """One closed-loop client per node; counts answers and failures."""

    def __init__(self, urls: list[str]) -> None:
        self.urls, self.stop = urls, threading.Event()
        self.answered, self.failures = 0, []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(u,)) for u in urls]

    def _client(self, url: str) -> None:
        body = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                         "data": [0.5] * 4}]})  # fmt: skip
        with httpx.Client(base_url=url, timeout=30) as http:
            while not self.stop.is_set():
                try:
                    r = http.post("/v2/models/m/infer", content=body)
                    ok, why = r.status_code == 200, f"{r.status_code} {r.text[:100]}"
                except httpx.HTTPError as exc:
                    ok, why = False, repr(exc)
                with self.lock:
                    if ok:
                        self.answered += 1
                    else:
                        self.failures.append(why)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def measure_floor(etcd: Etcd, s3: S3Server, work: Path) -> dict[str, float]:
    """One node's unavoidable work for version 2, each part measured alone (medians of 3)."""
    store = FleetStore.connect(etcd.url, FLEET)
    watch_times = []
    for i in range(5):
        events, cancel = store.watch_prefix(f"/bench-floor/{i}")
        seen = threading.Event()
        threading.Thread(target=lambda ev=events, s=seen: (next(iter(ev)), s.set()),
                         daemon=True).start()  # fmt: skip
        time.sleep(0.2)
        start = time.perf_counter()
        store.put(f"/bench-floor/{i}", {"i": i})
        seen.wait(5)
        watch_times.append(time.perf_counter() - start)
        cancel()
    client = s3.client()
    parts: dict[str, list[float]] = {"download": [], "hash": [], "load": []}
    for i in range(3):
        target = work / f"floor-{i}"
        target.mkdir()
        start = time.perf_counter()
        for name in ("model.onnx", MANIFEST):
            client.download_file("models", f"repo/m/2/{name}", str(target / name))
        parts["download"].append(time.perf_counter() - start)
        start = time.perf_counter()
        hashlib.sha256((target / "model.onnx").read_bytes()).hexdigest()
        parts["hash"].append(time.perf_counter() - start)
        start = time.perf_counter()
        session = ort.InferenceSession(str(target / "model.onnx"))
        session.run(None, {"x": np.zeros((1, 4), np.float32)})
        parts["load"].append(time.perf_counter() - start)
    floor = {"watch": statistics.median(watch_times)}
    floor.update({k: statistics.median(v) for k, v in parts.items()})
    floor["total"] = sum(floor.values())
    return floor


def own_load_seconds(audit: Path, version: int) -> float:
    """A node's own time from DISCOVERED to READY for ``version`` (its audit log)."""
    times = {}
    for line in audit.read_text().splitlines():
        event = orjson.loads(line)
        if event.get("kind") == "state" and event.get("version") == version:
            times.setdefault(event["state"], event["time"])
    return times["READY"] - times["DISCOVERED"]


def publish_versions(s3: S3Server, work: Path, model_mb: int) -> str:
    """Versions 1 and 2 in S3; the digest of version 1."""
    client = s3.client()
    client.put_object(Bucket="models", Key="repo/m/model.yaml",
                      Body=b"version_policy: {latest: 1}\ndrain_timeout: 5s\n")  # fmt: skip
    for version in (1, 2):
        path = work / f"m-{version}.onnx"
        model = affine_model(float(version), padding_floats=model_mb * 2**20 // 4)
        onnx.save(model, str(path))
        publish_to_s3(path, REPOSITORY, "m", version=version, client=client)
    manifest = client.get_object(Bucket="models", Key=f"repo/m/1/{MANIFEST}")["Body"].read()
    return hashlib.sha256(manifest).hexdigest()


def follow_rollout(etcd: Etcd, start: float, timeout: float = 600) -> tuple[list[dict], object]:
    """Poll the fleet until the rollout ends; per wave: its nodes, and its start and converged
    times (seconds after ``start``, a perf_counter reading; the first wave starts at 0)."""
    store = FleetStore.connect(etcd.url, FLEET)
    waves: dict[int, dict] = {}
    while time.perf_counter() - start < timeout:
        state = fleet_state(store)
        now = time.perf_counter() - start
        r = state.rollouts["m"]
        waves.setdefault(r.wave, {"start": now if r.wave else 0.0})
        for w, info in waves.items():
            nodes = r.order[: r.sizes[w]]
            if "done" not in info and all(
                state.reports.get(n, {}).get("models", {}).get("m", {}).get("serving", {})
                .get(str(r.candidate.version)) == r.candidate.digest
                and state.reports[n]["models"]["m"].get("default") == r.candidate.version
                for n in nodes
            ):  # fmt: skip
                info["done"], info["nodes"] = now, len(nodes)
        if r.finished:
            return [waves[w] for w in sorted(waves)], r
        time.sleep(0.05)
    raise RuntimeError("the rollout did not end in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--model-mb", type=int, default=32)
    parser.add_argument("--waves", default="1,40%,100%")
    parser.add_argument("--max-loading", type=int, default=5)
    parser.add_argument("--s3-interval", type=float, default=2.0,
                        help="listing interval while measuring (scaled to 30 s)")  # fmt: skip
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args()

    counter = RequestCounter()
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.setLevel(logging.INFO)
    werkzeug.propagate = False
    werkzeug.addHandler(counter)
    work = Path(tempfile.mkdtemp(prefix="baton-bench-fleet-"))
    etcd, s3, nodes = Etcd("bench"), S3Server(), []
    try:
        etcd.start(work / "etcd")
        s3.start().make_bucket("models")
        digest = publish_versions(s3, work, args.model_mb)
        set_target(FleetStore.connect(etcd.url, FLEET), "m", 1, by="bench", digest=digest)
        for i in range(args.nodes):
            flags = ["--repository", REPOSITORY, "--s3-endpoint", s3.endpoint,
                     "--s3-interval", f"{args.s3_interval}s", "--cache-dir",
                     str(work / f"cache-{i}"), "--fleet", etcd.url, "--fleet-name", FLEET,
                     "--zone", f"zone-{i % 2}"]  # fmt: skip
            nodes.append(Node(f"node-{i}", flags, s3.env(), work / f"node-{i}.log").start())
        for node in nodes:
            node.wait_ready(300)
        time.sleep(2 * args.s3_interval)  # every node has listed version 2
        idle_start, before = time.perf_counter(), counter.count
        time.sleep(args.idle_seconds)
        idle = time.perf_counter() - idle_start
        per_listing = (counter.count - before) / args.nodes / (idle / args.s3_interval)
        floor = measure_floor(etcd, s3, work)
        with Load([n.url for n in nodes]) as load:
            time.sleep(2)
            options = RolloutOptions(args.waves, 0.0, args.max_loading,
                                     FleetGates(max_p99_ratio=None))  # fmt: skip
            started = time.perf_counter()  # what `baton fleet rollout start` does, in-process
            start_rollout(FleetStore.connect(etcd.url, FLEET), "m", 2, options, by="bench")
            waves, rollout = follow_rollout(etcd, started)
            total = time.perf_counter() - started
            time.sleep(1)
    finally:
        for node in nodes:
            node.stop(30)
        s3.stop()
        etcd.stop()

    index = {n.name: i for i, n in enumerate(nodes)}
    own = {name: own_load_seconds(work / f"cache-{i}" / ".baton" / "audit.jsonl", 2)
           for name, i in index.items()}  # fmt: skip
    solo = floor["watch"] + own[rollout.order[0]]  # the first wave's node loads alone
    rows = []
    for i, w in enumerate(waves):
        took = w.get("done", float("nan")) - w["start"]
        new = rollout.order[rollout.sizes[i - 1] if i else 0 : rollout.sizes[i]]
        slowest = max(own[n] for n in new)
        rows.append([i + 1, w.get("nodes", "-"), len(new), took, slowest, took - slowest,
                     "yes" if took <= 2.0 + slowest else "NO", 2.0 + solo,
                     "yes" if took <= 2.0 + solo else "NO"])  # fmt: skip
    print(f"# fleet rollout: {args.nodes} nodes, {args.model_mb} MB model, waves {args.waves}, "
          f"max loading {args.max_loading}, wave interval 0 s")  # fmt: skip
    print(f"# {machine()}, {stamp()}")
    print(table(["wave", "nodes", "new", "converged s", "slowest own load s", "fleet s",
                 "<= 2 s + own load", "2 s + solo load s", "<= 2 s + solo"], rows))  # fmt: skip
    print(
        "(own load: a node's DISCOVERED → READY for version 2 in that wave, from its audit log; "
        "fleet: converged - slowest own load (watches, coordinator, reports); solo load: the "
        "first wave's node, which loads alone, plus the watch latency)"
    )
    print()
    print(table(["measured alone", "seconds"], [[k, v] for k, v in floor.items()]))
    print()
    print(table(
        ["rollout", "value"],
        [["status", rollout.status], ["start to promoted (s)", total],
         ["requests answered", load.answered], ["failed requests", len(load.failures)]],
    ))  # fmt: skip
    print()
    hourly = per_listing * 3600 / DEFAULT_INTERVAL
    print(table(
        ["S3 requests per node", "value"],
        [["per listing (idle fleet)", per_listing],
         [f"per hour at the default {DEFAULT_INTERVAL:g} s", hourly]],
    ))  # fmt: skip
    if load.failures:
        print("failures:", *sorted(set(load.failures))[:5], sep="\n  ")


if __name__ == "__main__":
    main()
