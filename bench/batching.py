"""Dynamic batching on vs off for a compute-heavy model, in one run on one server.

    python bench/batching.py [--duration 15] [--concurrency 64]

The model is a 4-layer, 1024-wide MLP (``baton.demo.mlp_model``, 16 MB of weights). The same
files are served twice: ``mlp`` without batching and ``mlp_batched`` with
``max_batch_size: 64, max_queue_delay_ms: 5``. Each client sends one row per request over HTTP.
Target (issue 3): at least 3x the throughput with batching at concurrency 64.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.demo import mlp_model, write_version
from bench.common import machine, stamp, start_baton, table

WIDTH = 1024
BATCHED = "max_batch_size: 64\nmax_queue_delay_ms: 5\n"


def load(url: str, model: str, concurrency: int, duration: float) -> dict:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "throughput_client.py"),
         "--target", url, "--protocol", "http", "--model", model, "--width", str(WIDTH),
         "--concurrency", str(concurrency), "--duration", str(duration), "--warmup", "2"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout)
    result["rps"] = result["requests"] / result["seconds"]
    return result


def batch_sizes(url: str) -> float:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    count = total = 0.0
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in family.samples:
            if s.labels.get("model") == "mlp_batched" and s.name == "baton_batch_size_count":
                count = s.value
            if s.labels.get("model") == "mlp_batched" and s.name == "baton_batch_size_sum":
                total = s.value
    return total / count if count else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo = work / "repo"
        write_version(repo / "mlp", 1, mlp_model(WIDTH))
        shutil.copytree(repo / "mlp", repo / "mlp_batched")
        (repo / "mlp_batched" / "model.yaml").write_text(BATCHED)
        server = start_baton(repo, work)
        try:
            results = {}
            for model in ("mlp", "mlp_batched"):
                print(f"{model} at concurrency {args.concurrency} ...", flush=True)
                results[model] = load(server.url, model, args.concurrency, args.duration)
            mean_batch = batch_sizes(server.url)
        finally:
            print(f"baton exited with {server.stop()}", flush=True)
    off, on = results["mlp"], results["mlp_batched"]
    print()
    print(f"batching — {stamp()} — {machine()}")
    print(
        f"4 x {WIDTH}-wide MLP (16 MB), one row per request over HTTP, concurrency "
        f"{args.concurrency}, {args.duration:.0f} s each"
    )
    print()
    print(table(
        ["batching", "req/s", "p50 ms", "p99 ms", "errors", "mean rows per backend call"],
        [["off", off["rps"], off["p50"], off["p99"], off["errors"], 1.0],
         ["on (max 64, 5 ms)", on["rps"], on["p50"], on["p99"], on["errors"], mean_batch]],
    ))  # fmt: skip
    print()
    print(f"throughput with batching: {on['rps'] / off['rps']:.2f}x (target: at least 3x)")


if __name__ == "__main__":
    main()
