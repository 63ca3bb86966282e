"""Shadow traffic vs the callers' latency, measured side by side on one server.

The repository holds identical models: ``plain`` (no rollout) and one per mirrored share, each
in a shadow step against a candidate with the same answers. One client sends requests one at a
time, in blocks of ``--block`` requests that rotate between the models, so every condition
sees the same moments of a noisy machine. Prints p50/p99 per model and the p99 ratio to
``plain``.

    python bench/shadow_latency.py [--blocks 120] [--block 50] [--fractions 0.2]

A share of 0.001 keeps the rollout's bookkeeping (live windows, gate checks) but mirrors almost
nothing, which separates its cost from that of the copies. Every model added to the rotation
adds cache pressure for all of them: compare one share at a time for the cleanest ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.dev.demo import affine_model, write_version
from baton.dev.testing import rotating_latencies
from bench.common import machine, stamp, start_baton, table

SHADOW_YAML = """\
rollout:
  mode: canary
  steps: [0, 100]
  interval: 3600
  shadow_fraction: {fraction}
  gates: {{min_requests: 50, max_p99_ratio: null}}
"""


def shadow_repository(root: Path, fractions: list[float]) -> dict[str, float | None]:
    """``plain`` plus one model per fraction, each at version 1; returns name → fraction."""
    models: dict[str, float | None] = {"plain": None}
    models.update({f"shadow-{f:g}": f for f in fractions})
    for name, fraction in models.items():
        write_version(root / name, 1, affine_model(1.0))
        if fraction is not None:
            (root / name / "model.yaml").write_text(SHADOW_YAML.format(fraction=fraction))
    return models


def start_shadowing(http: httpx.Client, root: Path, models: dict[str, float | None]) -> None:
    """Publish an agreeing version 2 of every shadow model and wait for its shadow step."""
    shadowed = [name for name, fraction in models.items() if fraction is not None]
    for name in shadowed:
        write_version(root / name, 2, affine_model(1.0))
    deadline = time.monotonic() + 60
    for name in shadowed:
        while (http.get(f"/admin/models/{name}/rollout").json()["rollout"] or {}).get(
            "candidate"
        ) != 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: no shadow rollout")
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=120)
    parser.add_argument("--block", type=int, default=50)
    parser.add_argument("--fractions", default="0.2")
    args = parser.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        models = shadow_repository(root, fractions)
        server = start_baton(root, Path(tmp))
        try:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                start_shadowing(http, root, models)
                rotating_latencies(http, list(models), 3, args.block)  # warm up
                latencies, problems = rotating_latencies(
                    http, list(models), args.blocks, args.block, seed=1
                )
                compared = {
                    name: http.get(f"/admin/models/{name}/rollout").json()["windows"]["2"]
                    for name, fraction in models.items()
                    if fraction is not None
                }
        finally:
            server.stop()
    assert not problems, problems[:5]
    base = np.percentile(latencies["plain"], 99)
    rows = []
    for name, lat in latencies.items():
        p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
        copies = compared[name]["compared"] if name in compared else "-"
        rows.append([name, len(lat), copies, f"{p50 * 1e3:.3f}", f"{p99 * 1e3:.3f}",
                     f"{p99 / base:.3f}"])  # fmt: skip
    print(f"# shadow latency · {stamp()} · {machine()}")
    print(table(["model", "requests", "copies compared", "p50 ms", "p99 ms", "p99 ratio"], rows))


if __name__ == "__main__":
    main()
