"""What open dashboards cost inference: p50/p99 and req/s with 0 and 5 live dashboards.

One Baton server (the demo's y = x + 1 on FP32[1, 16]); the closed-loop load generator
(``bench/throughput_client.py``, HTTP) runs ``--rounds`` times with no dashboard and with
``--dashboards`` dashboards reading ``/dashboard/stream`` (each its own connection, as a
browser holds it, in a separate process so their reading does not slow the load generator),
interleaved A/B/A/B on this noisy shared machine. Prints each round and the medians' ratios,
the server's CPU per request, and what the open dashboards cost the server with no load at all
(CPU seconds per second over ``--idle`` seconds: the feed's own price).

    python bench/dashboard.py --rounds 4 --duration 8 --concurrency 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent))

from baton.dev.demo import affine_model, write_version  # noqa: E402
from baton.dev.testing import ServerProcess  # noqa: E402
from bench.throughput_client import cpu_since, tree_cpu  # noqa: E402

READER = """
import sys, threading, httpx
url, count = sys.argv[1], int(sys.argv[2])
def read():
    with httpx.stream("GET", url, timeout=None) as r:
        for _ in r.iter_raw():
            pass
for _ in range(count):
    threading.Thread(target=read, daemon=True).start()
print("reading", flush=True)
sys.stdin.read()
"""


def load(url: str, pid: int, concurrency: int, duration: float) -> dict:
    out = subprocess.run(
        [sys.executable, str(HERE / "throughput_client.py"), "--target", url, "--protocol",
         "http", "--model", "m", "--concurrency", str(concurrency), "--duration", str(duration),
         "--server-pid", str(pid)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def open_dashboards(url: str, count: int) -> subprocess.Popen:
    readers = subprocess.Popen(
        [sys.executable, "-c", READER, f"{url}/dashboard/stream", str(count)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert readers.stdout.readline().strip() == "reading"
    time.sleep(1.5)  # every stream has its snapshot and ticks are flowing
    return readers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--dashboards", type=int, default=5)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of the idle measure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="baton-bench-dashboard-") as tmp:
        root = Path(tmp) / "repo"
        write_version(root / "m", 1, affine_model(1.0, width=16))
        server = ServerProcess.start(root, Path(tmp) / "server.log")
        results: dict[int, list[dict]] = {0: [], args.dashboards: []}
        try:
            load(server.url, server.process.pid, args.concurrency, 2.0)  # warm up
            pid = server.process.pid
            idle = {}
            for count in (0, args.dashboards):
                readers = open_dashboards(server.url, count) if count else None
                before = tree_cpu(pid)
                time.sleep(args.idle)
                idle[count] = cpu_since(pid, before) / args.idle
                if readers is not None:
                    readers.kill()
                    readers.wait()
            for _ in range(args.rounds):
                for count in (0, args.dashboards):
                    readers = open_dashboards(server.url, count) if count else None
                    try:
                        results[count].append(
                            load(server.url, server.process.pid, args.concurrency, args.duration)
                        )
                    finally:
                        if readers is not None:
                            readers.kill()
                            readers.wait()
                    r = results[count][-1]
                    rps = r["requests"] / r["seconds"]
                    cpu = r["server_cpu"] / r["requests"] * 1e6
                    print(f"dashboards={count}  req/s={rps:9.1f}  p50={r['p50']:.3f} ms  "
                          f"p99={r['p99']:.3f} ms  server CPU/request={cpu:.0f} µs",
                          flush=True)  # fmt: skip
        finally:
            server.stop()

    def median(count: int, key: str) -> float:
        if key == "rps":
            return statistics.median(r["requests"] / r["seconds"] for r in results[count])
        if key == "cpu":
            return statistics.median(r["server_cpu"] / r["requests"] * 1e6 for r in results[count])
        return statistics.median(r[key] for r in results[count])

    n = args.dashboards
    print("\n| dashboards | req/s (median) | p50 ms | p99 ms | server CPU µs/request | "
          "server CPU, no load |\n|---|---|---|---|---|---|")  # fmt: skip
    for count in (0, n):
        print(f"| {count} | {median(count, 'rps'):,.0f} | {median(count, 'p50'):.3f} | "
              f"{median(count, 'p99'):.3f} | {median(count, 'cpu'):.0f} | "
              f"{idle[count] * 1000:.1f} ms/s |")  # fmt: skip
    print(f"\n{n} dashboards vs none: p99 x{median(n, 'p99') / median(0, 'p99'):.3f}, "
          f"p50 x{median(n, 'p50') / median(0, 'p50'):.3f}, "
          f"req/s x{median(n, 'rps') / median(0, 'rps'):.3f}, "
          f"CPU/request x{median(n, 'cpu') / median(0, 'cpu'):.3f} "
          f"(target: p99 within 5 %; {args.rounds} interleaved rounds of {args.duration:g} s, "
          f"concurrency {args.concurrency})")  # fmt: skip


if __name__ == "__main__":
    main()
