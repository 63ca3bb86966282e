"""Fuzzing at scale: the fuzz suite's strategies (tests/fuzz/strategies.py) against real
servers, counting every answer the tests would fail on instead of stopping at the first.

    python bench/fuzz.py [--scale 10] [--targets http_json grpc_bytes ...] [--seed N]

Each target gets a fresh ``baton serve`` (loopback, a repository in a temp dir, 1 MiB body
limit) and ``BUDGET[target] x --scale`` cases (the tests run scale 1: about 2,000 cases; the
default scale 10 runs about 20,000), while a background thread sends valid requests and checks
every answer (y = x + version). Per target it prints: cases sent; answers that were a 5xx, gRPC
``INTERNAL``/``UNKNOWN`` or none at all; crashes (the process died, or stopped answering its
health check: it is killed and restarted); good requests and how many failed; and the exit code
of the last server on SIGTERM (0 expected). Then one reproduction per distinct failure (the
request, the answer, the server log's record), the shortest seen.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fuzz.strategies import (
    BUDGET,
    AdminProbe,
    GoodTraffic,
    GrpcProbe,
    HttpProbe,
    ServerBroken,
    admin_cases,
    admin_operations,
    admin_value_cases,
    budget,
    grpc_bytes_cases,
    grpc_message_cases,
    http_binary_cases,
    http_encoding_cases,
    http_json_cases,
    http_path_cases,
    start_fuzz_server,
    stop_server,
    write_fuzz_repository,
)

from bench.common import machine, stamp, table

#: target → (probe kind, strategy; the admin one is built from the live server's schema).
TARGETS = {
    "admin_schema": ("admin", None),
    "admin_values": ("http", admin_value_cases()),
    "http_json": ("http", http_json_cases()),
    "http_binary": ("http", http_binary_cases()),
    "http_encoding": ("http", http_encoding_cases()),
    "http_paths": ("http", http_path_cases()),
    "grpc_messages": ("grpc", grpc_message_cases()),
    "grpc_bytes": ("grpc", grpc_bytes_cases()),
}
assert set(TARGETS) == set(BUDGET)


@dataclass
class Run:
    """One target's server, probe and good traffic (replaced after a crash) and its counts."""

    target: str
    workdir: Path
    cases: int = 0
    bad: int = 0
    crashes: int = 0
    good: int = 0
    good_failed: int = 0
    exit_code: int | None = None
    failures: dict[str, str] = field(default_factory=dict)  # signature → shortest report
    signatures: Counter = field(default_factory=Counter)

    def start(self) -> None:
        repo = self.workdir / "repo"
        if not repo.exists():
            write_fuzz_repository(repo)
        log = self.workdir / f"server-{time.monotonic_ns()}.log"
        self.server = start_fuzz_server(repo, log)
        kind = TARGETS[self.target][0]
        self.probe = {"admin": AdminProbe, "http": HttpProbe, "grpc": GrpcProbe}[kind](self.server)
        protocols = ("http", "grpc") if kind == "grpc" else ("http",)
        self.traffic = GoodTraffic(self.server, protocols).__enter__()

    def finish_traffic(self) -> None:
        self.traffic.stop()
        self.good += self.traffic.sent
        self.good_failed += self.traffic.failures
        for what in self.traffic.failed[:3]:
            self.record(f"good request: {what}")

    def stop(self) -> None:
        self.finish_traffic()
        self.probe.close()
        problem = stop_server(self.server)
        self.exit_code = self.server.process.returncode
        if problem:
            self.record(f"SIGTERM: {problem}")

    def restart(self, why: str) -> None:
        """Count a crash, keep its report, and start a fresh server."""
        self.crashes += 1
        self.record(f"crash: {why}")
        self.finish_traffic()
        self.probe.close()
        if self.server.process.poll() is None:
            self.server.process.kill()
            self.server.process.wait()
        self.start()

    def record(self, report: str) -> None:
        signature = _signature(report)
        self.signatures[signature] += 1
        known = self.failures.get(signature)
        if known is None or len(report) < len(known):
            self.failures[signature] = report

    def check(self, case) -> None:
        self.cases += 1
        try:
            problems = self.probe.check(case)
        except ServerBroken as broken:
            self.bad += 1  # no answer, or the answer that came before it died
            self.restart(str(broken))
            return
        if problems:
            self.bad += 1
            self.record("\n".join(problems))


def _signature(report: str) -> str:
    """What makes two failures the same: the kind of answer, the last Baton frame of the
    traceback, and the exception (quoted values masked)."""
    mask = lambda text: re.sub(r"'[^']*'", "'…'", text)  # noqa: E731
    first = mask(re.sub(r"request [0-9a-f]{12}", "request …", report.splitlines()[0]))[:100]
    frames = re.findall(r'File "[^"]*/(baton/[^"]+)", line (\d+)', report)
    where = f"{frames[-1][0]}:{frames[-1][1]}" if frames else ""
    causes = re.findall(r"^\s*(\w+(?:\.\w+)*(?:Error|Exception)\b.*)$", report, re.MULTILINE)
    cause = mask(causes[-1])[:100] if causes else ""
    return " | ".join(part for part in (first, where, cause) if part)


def run_target(target: str, factor: float, workdir: Path, seed_value: int | None) -> Run:
    run = Run(target, workdir)
    run.start()
    strategy = TARGETS[target][1]
    if strategy is None:  # admin: strategies from the live server's own OpenAPI description
        import schemathesis

        schema = schemathesis.openapi.from_url(f"{run.server.url}/admin/openapi.json")
        strategy = admin_cases(admin_operations(schema))

    @settings(
        max_examples=budget(target, factor),
        deadline=None,
        database=None,
        phases=[Phase.generate],  # count failures, do not stop or shrink
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def fuzz(case) -> None:
        run.check(case)

    if seed_value is not None:
        fuzz = seed(seed_value)(fuzz)
    started = time.monotonic()
    try:
        fuzz()
    finally:
        run.stop()
    print(f"  {target}: {run.cases} cases in {time.monotonic() - started:.0f} s", flush=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=10.0, help="x the tests' case counts")
    parser.add_argument("--targets", nargs="+", choices=sorted(TARGETS), default=list(TARGETS))
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (repeatable)")
    args = parser.parse_args()
    total = sum(budget(t, args.scale) for t in args.targets)
    print(f"# fuzz: {total} cases over {len(args.targets)} targets (scale {args.scale:g})")
    print(f"# {machine()}, {stamp()}", flush=True)
    started = time.monotonic()
    runs = []
    with tempfile.TemporaryDirectory(prefix="baton-fuzz-") as tmp:
        for target in args.targets:
            workdir = Path(tmp) / target
            workdir.mkdir()
            runs.append(run_target(target, args.scale, workdir, args.seed))
    rows = [[r.target, r.cases, r.bad, r.crashes, r.good, r.good_failed, r.exit_code] for r in runs]
    rows.append(
        ["total", *(sum(row[i] for row in rows) for i in range(1, 6)), "-"]  # type: ignore[misc]
    )
    print()
    headers = ["target", "cases", "5xx/INTERNAL", "crashes", "good requests", "failed good",
               "SIGTERM exit"]  # fmt: skip
    print(table(headers, rows))
    print(f"\n{time.monotonic() - started:.0f} s in all")
    for r in runs:
        for signature, report in r.failures.items():
            print(f"\n## {r.target}: {r.signatures[signature]} x {signature}\n{report}")


if __name__ == "__main__":
    main()
