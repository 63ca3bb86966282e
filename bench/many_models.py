"""Many models republished at once: how long until all serve, and how fast an operator's
rollback of another model takes effect meanwhile.

    python bench/many_models.py [--models 50] [--load-seconds 0.5] [--concurrency 1 4]
                                [--load-kind sleep|cpu]

Each of ``--models`` models is a custom Python handler whose load takes ``--load-seconds``:
``sleep`` waits (as a load from disk or network does), ``cpu`` computes in numpy (as a
framework building a model does; numpy releases the GIL). A separate ONNX model, ``other``,
keeps versions 1 and 2 loaded (labels hold both, so a rollback and an unpin need no load).

For each ``--concurrency`` (the server's ``--max-concurrent-loads``), a fresh server loads
version 1 of every model; then version 2 of all of them is published at once (staged, then
renamed). Until every model serves version 2, ``other`` is rolled back
(``POST /admin/models/other/rollback``) and unpinned again and again. An action takes effect
when the server's serving map routes to the version it names (its ``swap`` event in the audit
log; the same clock as the client's send time). The time until a client is first answered by
that version is reported too: it adds the client's own polling on a busy machine.
Target: p99 of the time to effect < 100 ms during the churn.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.dev.demo import affine_model, write_version
from baton.dev.testing import ServerProcess, audit_entries
from bench.common import machine, percentiles, stamp, table

HANDLER = '''
import time
from pathlib import Path

import numpy as np


class SlowLoad:
    """y = x + offset, where offset is read from the version's offset.txt; load takes time."""

    def __init__(self, load_seconds=0.5, kind="sleep"):
        self.load_seconds, self.kind = load_seconds, kind

    def load(self, path):
        if self.kind == "sleep":
            time.sleep(self.load_seconds)
        else:  # numpy matrix products (the GIL is released while they run)
            a = np.ones((256, 256), np.float32)
            deadline = time.perf_counter() + self.load_seconds
            while time.perf_counter() < deadline:
                a = (a @ a) / 256.0
        self.offset = np.float32(float(Path(path, "offset.txt").read_text()))

    def predict(self, inputs):
        return {"y": inputs["x"] + self.offset}

    def unload(self):
        pass
'''

MODEL_YAML = """backend: python
python: {{handler: "handler.py:SlowLoad", kwargs: {{load_seconds: {seconds}, kind: {kind}}}}}
inputs: [{{name: x, datatype: FP32, shape: [-1, 4]}}]
outputs: [{{name: y, datatype: FP32, shape: [-1, 4]}}]
"""
BODY = orjson.dumps(
    {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0, 0, 0, 0]}]}
)


def write_repository(root: Path, models: int, seconds: float, kind: str) -> list[str]:
    names = [f"m{i:02d}" for i in range(models)]
    for name in names:
        d = root / name
        (d / "1").mkdir(parents=True)
        (d / "handler.py").write_text(HANDLER)
        (d / "model.yaml").write_text(MODEL_YAML.format(seconds=seconds, kind=kind))
        (d / "1" / "offset.txt").write_text("1")
    for v in (1, 2):
        write_version(root / "other", v, affine_model(float(v)))
    (root / "other" / "model.yaml").write_text("labels: {previous: 1, current: 2}\n")
    return names


def publish_all(root: Path, names: list[str], version: int) -> None:
    for name in names:  # stage everything first, then rename: one burst of new versions
        staging = root / name / f".{version}.tmp"
        staging.mkdir()
        (staging / "offset.txt").write_text(str(version))
    for name in names:
        (root / name / f".{version}.tmp").rename(root / name / str(version))


def served(http: httpx.Client, model: str) -> str:
    return http.post(f"/v2/models/{model}/infer", content=BODY).json()["model_version"]


def act(http: httpx.Client, call, version: str) -> tuple[float, str, float]:
    """Make the admin call; (its send time, the version it names, seconds until a client is
    first answered by that version)."""
    sent, started = time.time(), time.perf_counter()
    done = threading.Thread(target=call)
    done.start()
    while served(http, "other") != version:
        pass
    seen = time.perf_counter() - started
    done.join()
    return sent, version, seen


def server_effects(http: httpx.Client, actions: list[tuple[float, str, float]]) -> list[float]:
    """Seconds from each action's send time to the ``swap`` event that routed to its version."""
    entries = audit_entries(str(http.base_url).rstrip("/"))
    swaps = [(e["time"], str(e["version"])) for e in entries
             if e["model"] == "other" and e["kind"] == "swap"]  # fmt: skip
    effects = []
    for sent, version, _ in actions:
        at = next(t for t, v in swaps if v == version and t >= sent)
        effects.append(at - sent)
    return effects


def all_serve(http: httpx.Client, names: list[str], version: int) -> bool:
    views = {m["name"]: m for m in http.get("/admin/models").json()}
    return all(views[n]["default_version"] == version for n in names)


def run(concurrency: int, args: argparse.Namespace, workdir: Path) -> list[object]:
    root = workdir / f"repo-{concurrency}"
    names = write_repository(root, args.models, args.load_seconds, args.load_kind)
    started = time.perf_counter()
    server = ServerProcess.start(
        root, workdir / f"baton-{concurrency}.log", poll_interval=0.25, log_level="warning",
        timeout=args.models * args.load_seconds * 2 + 60,
        args=("--max-concurrent-loads", str(concurrency)),
    )  # fmt: skip
    first = time.perf_counter() - started
    http = httpx.Client(base_url=server.url, timeout=60)
    try:
        publish_all(root, names, 2)
        published = time.perf_counter()
        actions = []
        while not all_serve(http, names, 2):
            actions.append(act(http, lambda: http.post("/admin/models/other/rollback"), "1"))
            actions.append(act(http, lambda: http.delete("/admin/models/other/pin"), "2"))
            time.sleep(0.05)
        churn = time.perf_counter() - published
        effects = np.array(server_effects(http, actions))
    finally:
        http.close()
        server.stop()
    p50, p99 = percentiles(effects)
    seen50, seen99 = percentiles(np.array([seen for _, _, seen in actions]))
    return [concurrency, args.models, f"{first:.1f}", f"{churn:.1f}", len(actions),
            p50, p99, effects.max() * 1000, seen50, seen99]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--load-seconds", type=float, default=0.5)
    parser.add_argument("--load-kind", choices=["sleep", "cpu"], default="sleep")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    print(f"# many models: {args.models} models, {args.load_seconds} s {args.load_kind} loads")
    print(f"# {machine()}, {stamp()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for concurrency in args.concurrency:
            rows.append(run(concurrency, args, Path(tmp)))
            print(f"  --max-concurrent-loads {concurrency} done", flush=True)
    print(table(["max loads", "models", "first load s", "republish s", "actions",
                 "effect p50 ms", "effect p99 ms", "max ms", "client saw p50 ms",
                 "client saw p99 ms"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
