"""Shadow mode on a real server: callers see only the stable version's answers, the candidate's
answers are compared, a disagreeing candidate is rolled back, and the callers' p99 latency with
shadow traffic is measured against phases without it.

Issue 4 targets at most +10 % at p99. That is NOT yet met reliably on the 2-core machines here
(measured +9 % to +33 %, see BENCHMARKS.md), so the latency assertion below is a regression
guard (at most +50 %), not the target; the measured ratio is printed for the record."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import orjson

from baton.demo import affine_model, write_version

from .conftest import wait_for

SHADOW_YAML = """\
rollout:
  mode: canary
  steps: [0, 100]
  interval: 3600
  shadow_fraction: {fraction}
  gates: {{min_requests: 50, max_p99_ratio: null}}
"""
FRACTION = 0.2  # mirrored share of traffic in the latency test (1.0 in the rollback test)
CLIENTS, REQUESTS = 1, 1000


def measure(url: str, versions: set[str], wrong: list[str]) -> list[float]:
    """Latencies (seconds) of REQUESTS requests from each of CLIENTS clients, one at a time."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=url, timeout=30) as http:
            for _ in range(REQUESTS):
                x = rng.standard_normal(4).astype(np.float32)
                body = orjson.dumps(
                    {
                        "inputs": [
                            {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x.tolist()}
                        ]
                    }
                )
                t0 = time.perf_counter()
                r = http.post("/v2/models/m/infer", content=body)
                elapsed = time.perf_counter() - t0
                doc = r.json()
                with lock:
                    latencies.append(elapsed)
                    versions.add(doc.get("model_version", "error"))
                    y = np.asarray(doc["outputs"][0]["data"], np.float32)
                    if not np.allclose(y, x + 1.0, atol=1e-5):
                        wrong.append(doc["model_version"])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def rollout(url: str) -> dict | None:
    return httpx.get(f"{url}/admin/models/m/rollout").json()


def last_rollout_event(url: str) -> dict:
    entries = httpx.get(f"{url}/admin/audit", params={"limit": 2000}).json()["entries"]
    return [e for e in entries if e["kind"] == "rollout"][-1]


def test_shadow_callers_see_stable_answers_at_unchanged_latency(server_factory, tmp_path):
    """Phases without and with shadow traffic alternate (six without, five with) so that the
    machine's drift averages out; each "with" phase shadows a fresh candidate version and is
    aborted before the next "without" phase. p99 is taken over each condition's pooled
    latencies."""
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    (root / "m" / "model.yaml").write_text(SHADOW_YAML.format(fraction=FRACTION))
    server = server_factory(root)
    versions: set[str] = set()
    wrong: list[str] = []
    measure(server.url, versions, wrong)  # warm up the server and the client
    off, on, compared = measure(server.url, versions, wrong), [], []
    for candidate in range(2, 7):
        write_version(root / "m", candidate, affine_model(1.0))  # agrees: stays in shadow
        wait_for(lambda c=candidate: (rollout(server.url)["rollout"] or {}).get("candidate") == c)
        on += measure(server.url, versions, wrong)
        view = rollout(server.url)
        assert view["rollout"] is not None, last_rollout_event(server.url)  # still shadowing
        shadow = view["windows"][str(candidate)]
        compared.append((shadow["compared"], shadow["agreed"]))
        assert httpx.post(f"{server.url}/admin/models/m/rollout/abort").status_code == 200
        off += measure(server.url, versions, wrong)

    assert versions == {"1"} and wrong == []  # callers only ever got the stable version
    assert all(n >= 150 and agreed == n for n, agreed in compared), compared
    with_shadow, without = np.percentile(on, 99), np.percentile(off, 99)
    print(
        f"shadow p99: without {without * 1000:.3f} ms ({len(off)} requests), "
        f"with {with_shadow * 1000:.3f} ms ({len(on)} requests), ratio "
        f"{with_shadow / without:.3f}; copies compared per phase {[n for n, _ in compared]} "
        f"(shadow_fraction {FRACTION})"
    )
    assert with_shadow <= 1.5 * without  # regression guard; the +10 % target is tracked


def test_disagreeing_shadow_is_rolled_back_and_never_answers(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    (root / "m" / "model.yaml").write_text(SHADOW_YAML.format(fraction=1.0))
    server = server_factory(root)
    write_version(root / "m", 2, affine_model(40.0))  # very different answers
    wait_for(lambda: rollout(server.url)["rollout"] is not None)
    versions: set[str] = set()
    wrong: list[str] = []
    measure(server.url, versions, wrong)
    assert versions == {"1"} and wrong == []
    entries = httpx.get(f"{server.url}/admin/audit", params={"limit": 1000}).json()["entries"]
    back = [e for e in entries if e["kind"] == "rollout" and e["state"] == "ROLLED_BACK"]
    assert back and "shadow_agreement" in back[0]["data"]["failed_gates"]
    assert "max abs diff 39" in back[0]["reason"]
