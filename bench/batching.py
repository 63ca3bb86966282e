"""Dynamic batching on vs off for a compute-heavy model, in one run on one server.

    python bench/batching.py [--duration 15] [--concurrency 64]

The models are 4-layer MLPs (``baton.dev.demo.mlp_model``), 1024 wide (16 MiB of weights) and
2048 wide (64 MiB). Each is served twice: ``mlp`` without batching and ``mlp_batched`` with
``max_batch_size: 64, max_queue_delay_ms: 5``. Each client sends one row per request over HTTP
with the binary tensor extension (tritonclient's default; ``--json`` for JSON tensors).
Target (issue 3): at least 3x the throughput with batching at concurrency 64. How much batching
gains depends on whether unbatched matrix-vector products are cache-bound or memory-bound: on
a CPU whose L3 holds the 16 MiB model, the gain is smaller; both sizes are reported.
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

from baton.dev.demo import mlp_model, write_version
from bench.common import machine, stamp, start_baton, table

BATCHED = "max_batch_size: 64\nmax_queue_delay_ms: 5\n"


def load(url: str, model: str, width: int, concurrency: int, duration: float, binary: bool) -> dict:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "throughput_client.py"),
         "--target", url, "--protocol", "http", "--model", model, "--width", str(width),
         "--concurrency", str(concurrency), "--duration", str(duration), "--warmup", "2",
         *(["--binary"] if binary else [])],
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


def measure(width: int, args: argparse.Namespace, work: Path) -> dict:
    repo = work / f"repo-{width}"
    write_version(repo / "mlp", 1, mlp_model(width))
    shutil.copytree(repo / "mlp", repo / "mlp_batched")
    (repo / "mlp_batched" / "model.yaml").write_text(BATCHED)
    server = start_baton(repo, work)
    try:
        results = {}
        for model in ("mlp", "mlp_batched"):
            print(f"{width}-wide {model} at concurrency {args.concurrency} ...", flush=True)
            results[model] = load(
                server.url, model, width, args.concurrency, args.duration, not args.json
            )
        results["mean_batch"] = batch_sizes(server.url)
    finally:
        print(f"baton exited with {server.stop()}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--widths", default="1024,2048")
    parser.add_argument("--json", action="store_true", help="JSON tensors instead of binary")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        results = {w: measure(w, args, Path(tmp)) for w in widths}
    encoding = "JSON tensors" if args.json else "binary tensor extension"
    print()
    print(f"batching — {stamp()} — {machine()}")
    print(
        f"4-layer MLPs, one row per request over HTTP ({encoding}), concurrency "
        f"{args.concurrency}, {args.duration:.0f} s each; batching = max 64 rows, 5 ms delay"
    )
    print()
    rows = []
    for w, r in results.items():
        off, on = r["mlp"], r["mlp_batched"]
        size = f"{4 * w * w * 4 / 2**20:.0f} MiB"
        rows.append(
            [
                f"{w} wide ({size})",
                "off",
                off["rps"],
                off["p50"],
                off["p99"],
                off["errors"],
                1.0,
                "",
            ]
        )
        rows.append(
            [
                f"{w} wide ({size})",
                "on",
                on["rps"],
                on["p50"],
                on["p99"],
                on["errors"],
                r["mean_batch"],
                f"{on['rps'] / off['rps']:.2f}x",
            ]
        )
    print(
        table(
            [
                "model",
                "batching",
                "req/s",
                "p50 ms",
                "p99 ms",
                "errors",
                "rows per call",
                "throughput",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
