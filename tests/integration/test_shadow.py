"""Shadow mode on a real server: callers see only the stable version's answers, the candidate's
answers are compared, a disagreeing candidate is rolled back, and shadowing does not raise the
callers' p99 latency by more than 10 % (issue 4), measured side by side in the test's own run.
"""

from __future__ import annotations

import httpx
import numpy as np

from baton.dev.demo import affine_model, write_version
from baton.dev.testing import rotating_latencies

from .conftest import wait_for

CLIENT_TIMEOUT = 30


def rollout(url: str, model: str = "m") -> dict:
    return httpx.get(f"{url}/admin/models/{model}/rollout").json()


def test_shadow_callers_see_stable_answers_at_unchanged_latency(server_factory, tmp_path):
    """Two identical models on one server: ``plain`` has no rollout, ``shadowed`` shadows an
    agreeing candidate at the default ``shadow_fraction``. One client alternates blocks of 10
    requests between them, so both see the same moments of a noisy machine, and p99 is compared
    over 6,000 requests each.

    On a shared 2-core machine, bursts of outside load alone move that ratio by about ±10 %
    (the effect being measured is about 1 %, see BENCHMARKS.md). So when a round lands above the
    target, another round is run and the ratio is taken again over all of them, up to three
    rounds: noise shrinks as the samples grow, and a real slowdown stays above the target."""
    root = tmp_path / "repo"
    for model in ("plain", "shadowed"):
        write_version(root / model, 1, affine_model(1.0))
    (root / "shadowed" / "model.yaml").write_text(
        "rollout: {mode: canary, steps: [0, 100], interval: 3600, gates: {max_p99_ratio: null}}\n"
    )
    server = server_factory(root)
    write_version(root / "shadowed", 2, affine_model(1.0))  # agrees: stays in shadow
    wait_for(lambda: (rollout(server.url, "shadowed")["rollout"] or {}).get("candidate") == 2)
    models = ["plain", "shadowed"]
    pooled: dict[str, list[float]] = {m: [] for m in models}
    ratios = []
    with httpx.Client(base_url=server.url, timeout=CLIENT_TIMEOUT) as http:
        rotating_latencies(http, models, 20, 10)  # warm up the server and the client
        for attempt in range(3):
            latencies, wrong = rotating_latencies(http, models, 600, 10, seed=attempt)
            assert wrong == []  # callers only ever got the stable version's answers
            for m in models:
                pooled[m] += latencies[m]
            plain, shadowed = (np.percentile(pooled[m], 99) for m in models)
            ratios.append(shadowed / plain)
            if ratios[-1] <= 1.10:
                break
    view = rollout(server.url, "shadowed")
    assert view["rollout"]["status"] == "RUNNING" and view["rollout"]["weight"] == 0.0
    shadow = view["windows"]["2"]
    # 0.2 of >= 6,000 requests are offered; copies are dropped while callers are in flight (by
    # design), so how many run depends on the machine's load: most do on an idle machine.
    assert shadow["compared"] >= 300 and shadow["agreed"] == shadow["compared"]
    print(
        f"shadow p99: plain {plain * 1000:.3f} ms, shadowed {shadowed * 1000:.3f} ms, ratio "
        f"{ratios[-1]:.3f} over {len(pooled['plain'])} requests each (ratio after each round: "
        f"{[round(float(r), 3) for r in ratios]}); {shadow['compared']} copies compared"
    )
    assert shadowed <= 1.10 * plain


def test_disagreeing_shadow_is_rolled_back_and_never_answers(server_factory, tmp_path):
    root = tmp_path / "repo"
    write_version(root / "m", 1, affine_model(1.0))
    (root / "m" / "model.yaml").write_text(
        "rollout: {mode: canary, steps: [0, 100], interval: 3600, shadow_fraction: 1.0,\n"
        "          gates: {min_requests: 50, max_p99_ratio: null}}\n"
    )
    server = server_factory(root)
    write_version(root / "m", 2, affine_model(40.0))  # very different answers
    wait_for(lambda: rollout(server.url)["rollout"] is not None)
    with httpx.Client(base_url=server.url, timeout=CLIENT_TIMEOUT) as http:
        _, wrong = rotating_latencies(http, ["m"], 20, 50)
    assert wrong == []  # every answer came from version 1

    def rolled_back():  # the gates are checked every rollout_period (1 s) while it runs
        entries = httpx.get(f"{server.url}/admin/audit", params={"limit": 1000}).json()
        return [e for e in entries["entries"]
                if e["kind"] == "rollout" and e["state"] == "ROLLED_BACK"]  # fmt: skip

    back = wait_for(rolled_back, timeout=10)
    assert "shadow_agreement" in back[0]["data"]["failed_gates"]
    assert "max abs diff 39" in back[0]["reason"]
