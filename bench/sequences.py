"""Stateful sequences (Triton's sequence protocol): what state handling costs, how much memory a
live sequence holds, and what happens to live sequences at a swap, side by side in one run.

    python bench/sequences.py [--parts latency,throughput,memory,drain,soak] [--rounds 10]
                              [--duration 60] [--soaks drain,migrate,canary,rollback,...]

The stateful model is ``baton.dev.demo.running_sum_model(version)`` (x FP32[1, 1] in, a state
of 64 floats kept by the server between a sequence's requests, y = version * running sum out);
every answer is checked against the ground truth of its sequence, with the promises of
``baton.dev.sequence_traffic`` (drain: a sequence stays on its version; migrate: its state is
carried, through the versions' migrate hook). Every part uses one lean client: a raw
keep-alive HTTP/1.1 socket per connection on uvloop (httpx costs ~3-5 ms of client CPU per
request under concurrency, more than the server spends).

1. **latency**: per-request p50 / p99 and server CPU per request of a plain stateless model of
   the same request shape (``affine_model(0.0, width=1)``, no sequence parameters) and of the
   running-sum model inside ``--steps``-step sequences (START, steps, END), on one server, in
   interleaved blocks (the order alternating round by round) at concurrency 1 and 16. Target:
   state handling adds < 10 % to p50 (the median of the per-round ratios).
2. **throughput**: sequences/s and steps/s for 10-step sequences at concurrency 32, with the
   stateless model's req/s at the same concurrency in interleaved rounds for reference.
3. **memory**: the server's RSS before and after opening ``--sequences`` live sequences (START
   only; ``max_sequences`` raised above it), so bytes per live sequence, beside the
   ``baton_sequence_state_bytes`` gauge; and after ending them all.
4. **drain**: a swap with ``--drain-sequences`` live sequences on version 1 when version 2 is
   published; *idle*: they wait for the swap, then each takes ``--drain-steps`` more steps,
   the last with END; *busy*: 32 clients keep stepping all of them through the swap, then
   ``--drain-steps`` more rounds. ``drain`` mode: the time from the publish to version 1
   UNLOADED, and the ``sequence_drain_seconds`` it reports beside the client's own measure
   (retirement to the last END on version 1). ``migrate`` mode (with a migrate hook): how long
   migrating them took (the ``sequences`` event). Failed requests and wrong answers: target 0.
5. **soak**: ``--soak-concurrency`` closed-loop clients running ``--soak-steps``-step sequences
   (the first ones shorter, so STARTs spread out) while a new version is published every
   ``--swap-every`` s for ``--duration`` s: immediate swaps in drain and migrate mode (with the
   hook); canaries (relaxed gates, so they promote); canaries held at 50 % and rolled back
   with ``rollout abort`` (``rollback``); an immediate swap, ``baton rollback`` and ``baton
   unpin`` for each version (``pin-rollback``); the last four in both modes. A canary is
   followed to its end before the next version comes. ``--soak-client drive`` uses
   ``baton.dev.sequence_traffic.drive`` (httpx) instead. Target: 0 broken sequences and 0
   failed requests everywhere.

Servers are stopped (SIGTERM to their PID) at the end of each part; each part prints the load
average, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson
import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.dev.demo import affine_model, running_sum_model, write_version
from baton.dev.sequence_traffic import (
    answer_matches,
    drive,
    expected_state,
    write_sequence_version,
)
from baton.dev.testing import ServerProcess, audit_entries
from baton.settings import parse_duration
from bench.common import machine, stamp, table
from bench.throughput_client import cpu_since, tree_cpu

PLAIN, SEQ = "plain", "seq"  # the stateless and the stateful model
CLIENT = "client-state"  # the running-sum model without `sequence:`: the client keeps the state
STATE_FLOATS = 64
MB = 2**20


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


# ---- repositories and servers -----------------------------------------------------------------
def sequence_yaml(
    model_dir: Path,
    *,
    swap: str = "drain",
    hook: bool = False,
    max_sequences: int = 10_000,
    idle_timeout: str = "60s",
    drain_timeout: str = "5m",
    rollout: dict | None = None,
) -> None:
    """``model_dir/model.yaml`` for the running-sum model (JSON is YAML)."""
    sequence = {
        "state": [{"input": "h_in", "output": "h_out", "dtype": "FP32", "shape": [STATE_FLOATS]}],
        "idle_timeout": idle_timeout,
        "max_sequences": max_sequences,
        "swap": swap,
        "drain_timeout": drain_timeout,
    }
    if hook:
        sequence["migrate_hook"] = "migrate.py"
    settings: dict = {"sequence": sequence}
    if rollout is not None:
        settings["rollout"] = rollout
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.yaml").write_text(json.dumps(settings, indent=2) + "\n")


def start_server(repo: Path, workdir: Path, tag: str, env: dict | None = None) -> ServerProcess:
    return ServerProcess.start(
        repo, workdir / f"baton-{tag}.log", poll_interval=0.25, log_level="warning",
        timeout=120, env=env, args=("--grpc-port", "0"),
    )  # fmt: skip


def stop(server: ServerProcess, label: str) -> None:
    code = server.stop()
    print(f"  ({label} server, PID {server.process.pid}, exited with {code})", flush=True)
    if code != 0:
        print(f"  server log tail:\n{server.output()[-2000:]}", flush=True)


def model_view(url: str, model: str) -> dict:
    r = httpx.get(f"{url}/admin/models/{model}", timeout=30)
    r.raise_for_status()
    return r.json()


def version_states(url: str, model: str) -> dict[int, str]:
    return {v["version"]: v["state"] for v in model_view(url, model)["versions"]}


def wait_until(what: str, ok: Callable[[], bool], timeout: float = 120, every=0.05) -> float:
    """Poll ``ok`` until true; returns the wall-clock time it first was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return time.time()
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def events(url: str, model: str) -> list[dict]:
    r = httpx.get(f"{url}/admin/events", params={"model": model, "limit": 10_000}, timeout=30)
    r.raise_for_status()
    return r.json()


def find_event(url: str, model: str, kind: str, version: int, state: str | None) -> dict | None:
    for e in events(url, model):
        if e["kind"] == kind and e["version"] == version and (state is None or e["state"] == state):
            return e
    return None


def metric(url: str, name: str, model: str) -> dict[str, float]:
    """``name{model=..., version=...}`` gauge values by version, from /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(name + "{") or f'model="{model}"' not in line:
            continue
        labels, value = line.rsplit(" ", 1)
        version = labels.split('version="', 1)[1].split('"', 1)[0]
        values[version] = float(value)
    return values


def rss(pid: int) -> int:
    """Resident bytes of the server's process tree."""
    root = psutil.Process(pid)
    total = 0
    for p in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


# ---- a lean client ----------------------------------------------------------------------------
class RawHTTP:
    """One keep-alive HTTP/1.1 connection: request bytes out, status and body back."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> RawHTTP:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s"
            % (path.encode(), self.host.encode(), self.port, len(body), body)
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at < 0:
            raise RuntimeError(f"no content-length in {head[:200]!r}")
        size = int(head[at + 17 : lower.index(b"\r\n", at + 2)])
        return status, await self.reader.readexactly(size)

    async def reconnect(self) -> None:
        self.close()
        await self.connect()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def with_connections(
    url: str, concurrency: int, work: Callable[[RawHTTP, int], Awaitable[None]]
) -> float:
    """Run ``work(connection, i)`` on ``concurrency`` connections at once; returns seconds."""
    host, port = url.removeprefix("http://").split(":")
    conns = [await RawHTTP(host, int(port)).connect() for _ in range(concurrency)]
    started = time.perf_counter()
    try:
        await asyncio.gather(*(work(c, i) for i, c in enumerate(conns)))
    finally:
        for c in conns:
            c.close()
    return time.perf_counter() - started


@dataclass
class Tally:
    requests: int = 0
    sequences: int = 0  # completed (END answered) or abandoned
    failed: int = 0  # requests answered with an error (or not answered)
    wrong: int = 0  # answers off the ground truth (or from a version that breaks the promise)
    moved: int = 0  # steps answered by another version than the previous step (migrate mode)
    broken: int = 0  # sequences abandoned: a failed request or a wrong answer
    versions: set[int] = field(default_factory=set)  # versions that answered
    latencies: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def note(self, problem: str) -> None:
        if len(self.problems) < 10:
            self.problems.append(problem)

    def finish(self, truth: Truth, *, broken: bool = False) -> None:
        """``truth``'s sequence is over: ended, or (``broken``) abandoned."""
        truth.done = True
        self.sequences += 1
        self.broken += broken

    def add(self, other: Tally) -> None:
        for name in ("requests", "sequences", "failed", "wrong", "moved", "broken"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latencies += other.latencies
        self.versions |= other.versions
        self.problems = (self.problems + other.problems)[:10]


@dataclass
class Truth:
    """One sequence as the client knows it: its id, what its state must hold, its version."""

    id: int
    total: float = 0.0
    version: int | None = None
    done: bool = False  # ended, or abandoned after a failure


def infer_body(x: float, parameters: dict | None) -> bytes:
    doc: dict = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [x]}]}
    if parameters:
        doc["parameters"] = parameters
    return orjson.dumps(doc)


async def post(conn: RawHTTP, path: str, body: bytes, tally: Tally) -> dict | None:
    """One request; its answer's JSON, or ``None`` (counted as failed) on an error."""
    tally.requests += 1
    sent = time.perf_counter()
    try:
        status, data = await conn.post(path, body)
    except (OSError, asyncio.IncompleteReadError, RuntimeError) as exc:
        tally.failed += 1
        tally.note(f"{type(exc).__name__}: {exc}")
        await conn.reconnect()
        return None
    if status != 200:
        tally.failed += 1
        tally.note(f"{status} {data[:300].decode(errors='replace')}")
        return None
    tally.latencies.append(time.perf_counter() - sent)
    return orjson.loads(data)


async def plain_request(conn: RawHTTP, rng: random.Random, tally: Tally) -> None:
    x = float(rng.randint(1, 9))
    doc = await post(conn, f"/v2/models/{PLAIN}/infer", infer_body(x, None), tally)
    if doc is not None and doc["outputs"][0]["data"][0] != x:
        tally.wrong += 1
        tally.note(f"plain: x={x}, y={doc['outputs'][0]['data'][0]}")


async def seq_step(
    conn: RawHTTP,
    truth: Truth,
    x: float,
    *,
    start: bool = False,
    end: bool = False,
    mode: str = "drain",
    hook: bool = False,
    tally: Tally,
    model: str = SEQ,
) -> bool:
    """One step of a sequence, checked against its ground truth; False when it failed or was
    wrong (the sequence is then abandoned)."""
    parameters: dict = {"sequence_id": truth.id}
    if start:
        parameters["sequence_start"] = True
    if end:
        parameters["sequence_end"] = True
    doc = await post(conn, f"/v2/models/{model}/infer", infer_body(x, parameters), tally)
    if doc is None:
        tally.finish(truth, broken=True)
        return False
    version = int(doc["model_version"])
    tally.versions.add(version)
    expected = expected_state(truth.total, truth.version, version, x, mode, hook)
    if expected is None:
        tally.wrong += 1
        tally.note(f"sequence {truth.id} moved {truth.version} -> {version} in drain mode")
        tally.finish(truth, broken=True)
        return False
    tally.moved += truth.version is not None and version != truth.version
    truth.version, truth.total = version, expected
    y = doc["outputs"][0]["data"][0]
    if not answer_matches(y, truth.total):
        tally.wrong += 1
        tally.note(f"sequence {truth.id} on v{version}: y={y}, expected {truth.total}")
        tally.finish(truth, broken=True)
        return False
    if end:
        tally.finish(truth)
    return True


async def client_sequence(conn: RawHTTP, steps: int, rng: random.Random, tally: Tally) -> None:
    """The same computation with the state kept by the client: it sends h_in (64 floats) on
    every request and keeps the h_out it gets back, as it must without server-side state."""
    state, total = [0.0] * STATE_FLOATS, 0.0
    for _ in range(steps):
        x = float(rng.randint(1, 9))
        body = orjson.dumps({"inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [x]},
            {"name": "h_in", "datatype": "FP32", "shape": [1, STATE_FLOATS], "data": state},
        ]})  # fmt: skip
        doc = await post(conn, f"/v2/models/{CLIENT}/infer", body, tally)
        if doc is None:
            return
        outputs = {o["name"]: o["data"] for o in doc["outputs"]}
        total += x
        state = outputs["h_out"]
        if outputs["y"][0] != total:
            tally.wrong += 1
            tally.note(f"client-held state: y={outputs['y'][0]}, expected {total}")
            return


async def whole_sequence(
    conn: RawHTTP, sid: int, steps: int, rng: random.Random, tally: Tally,
    mode: str = "drain", hook: bool = False,
) -> None:  # fmt: skip
    truth = Truth(sid)
    for step in range(steps):
        x = float(rng.randint(1, 9))
        ok = await seq_step(conn, truth, x, start=step == 0, end=step == steps - 1, mode=mode,
                            hook=hook, tally=tally)  # fmt: skip
        if not ok:
            return


# ---- 1. latency with and without state -------------------------------------------------------
async def latency_block(url: str, side: str, concurrency: int, requests: int, steps: int,
                        ids: itertools.count, seed: int) -> Tally:  # fmt: skip
    """``requests`` requests (about) to one side at ``concurrency``."""
    per = (
        max(steps, round(requests / concurrency / steps) * steps)
        if side in (SEQ, CLIENT)
        else max(1, requests // concurrency)
    )
    tallies = [Tally() for _ in range(concurrency)]

    async def work(conn: RawHTTP, i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        if side == PLAIN:
            for _ in range(per):
                await plain_request(conn, rng, tallies[i])
        elif side == CLIENT:
            for _ in range(per // steps):
                await client_sequence(conn, steps, rng, tallies[i])
        else:
            for _ in range(per // steps):
                await whole_sequence(conn, next(ids), steps, rng, tallies[i])

    await with_connections(url, concurrency, work)
    total = Tally()
    for t in tallies:
        total.add(t)
    return total


def latency_part(args, server: ServerProcess, ids: itertools.count) -> None:
    print(f"## 1. Latency per request, with and without state ({load_average()})\n", flush=True)
    url, pid = server.url, server.process.pid
    results: dict[tuple[int, str], Tally] = {}
    per_round: dict[tuple[int, str], list[float]] = {}  # p50 ms of each round
    cpu: dict[tuple[int, str], float] = {}  # server CPU seconds, all rounds
    for c in args.latency_concurrency:
        for side in (PLAIN, SEQ, CLIENT):  # warm-up, not counted
            asyncio.run(latency_block(url, side, c, args.block // 4, args.steps, ids, 99))
        for r in range(args.rounds):
            for side in (PLAIN, SEQ, CLIENT) if r % 2 == 0 else (CLIENT, SEQ, PLAIN):
                before = tree_cpu(pid)
                tally = asyncio.run(latency_block(url, side, c, args.block, args.steps, ids, r))
                cpu[(c, side)] = cpu.get((c, side), 0.0) + cpu_since(pid, before)
                results.setdefault((c, side), Tally()).add(tally)
                p50 = float(np.percentile(tally.latencies, 50)) * 1000
                per_round.setdefault((c, side), []).append(p50)
            a, b = per_round[(c, PLAIN)][-1], per_round[(c, SEQ)][-1]
            k = per_round[(c, CLIENT)][-1]
            print(f"  concurrency {c}, round {r + 1}: p50 without {a:.3f} ms, with {b:.3f} ms "
                  f"({b / a:.3f}x), client-held state {k:.3f} ms", flush=True)  # fmt: skip
    rows, ratios = [], []
    for c in args.latency_concurrency:
        cells = {}
        for side, label in ((PLAIN, "without state (plain model)"),
                            (SEQ, f"with state ({args.steps}-step sequences)"),
                            (CLIENT, "state kept by the client (h_in/h_out sent)")):  # fmt: skip
            t = results[(c, side)]
            lat = np.asarray(t.latencies) * 1000
            p50, p99 = (float(v) for v in np.percentile(lat, [50, 99]))
            us = cpu[(c, side)] / max(t.requests, 1) * 1e6
            cells[side] = (p50, p99, us)
            rows.append([c, label, t.requests, p50, p99, us, t.failed, t.wrong])
        round_ratios = [s / p for p, s in zip(per_round[(c, PLAIN)], per_round[(c, SEQ)],
                                             strict=True)]  # fmt: skip
        median = statistics.median(round_ratios)
        ratios.append([c, f"{cells[SEQ][0] / cells[PLAIN][0]:.3f}", f"{median:.3f}",
                       f"{cells[SEQ][1] / cells[PLAIN][1]:.3f}",
                       f"{cells[SEQ][2] / cells[PLAIN][2]:.3f}",
                       "met" if median < 1.10 else "missed",
                       f"{cells[SEQ][0] / cells[CLIENT][0]:.3f}"])  # fmt: skip
        for side in (PLAIN, SEQ, CLIENT):
            for p in results[(c, side)].problems[:3]:
                print(f"  problem ({side}, concurrency {c}): {p}")
    print()
    print(f"{args.rounds} interleaved rounds of ~{args.block} requests per side (the order "
          "alternating); percentiles over all rounds\n")  # fmt: skip
    print(table(["concurrency", "requests", "n", "p50 ms", "p99 ms", "server µs CPU/req",
                 "failed", "wrong"], rows))  # fmt: skip
    print()
    print(table(["concurrency", "p50 with ÷ without", "median of per-round p50 ratios",
                 "p99 with ÷ without", "server CPU/req with ÷ without",
                 "target: p50 < 1.10", "p50 with ÷ client-held state"], ratios))  # fmt: skip
    print(flush=True)


# ---- 2. throughput ---------------------------------------------------------------------------
async def throughput_block(url: str, side: str, concurrency: int, seconds: float, steps: int,
                           ids: itertools.count, seed: int) -> tuple[Tally, float]:  # fmt: skip
    """Closed loop for ``seconds`` (each client finishes its sequence); (tally, elapsed)."""
    tallies = [Tally() for _ in range(concurrency)]
    deadline = time.monotonic() + seconds

    async def work(conn: RawHTTP, i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        while time.monotonic() < deadline:
            if side == PLAIN:
                await plain_request(conn, rng, tallies[i])
            else:
                await whole_sequence(conn, next(ids), steps, rng, tallies[i])

    elapsed = await with_connections(url, concurrency, work)
    total = Tally()
    for t in tallies:
        total.add(t)
    return total, elapsed


def throughput_part(args, server: ServerProcess, ids: itertools.count) -> None:
    c, steps = args.tp_concurrency, args.tp_steps
    url, pid = server.url, server.process.pid
    print(f"## 2. Throughput: {steps}-step sequences at concurrency {c} ({load_average()})\n",
          flush=True)  # fmt: skip
    asyncio.run(throughput_block(url, SEQ, c, 1.0, steps, ids, 99))  # warm-up
    asyncio.run(throughput_block(url, PLAIN, c, 1.0, steps, ids, 99))
    runs: dict[str, list[tuple[Tally, float]]] = {PLAIN: [], SEQ: []}
    cpu = {PLAIN: [0.0, 0.0], SEQ: [0.0, 0.0]}  # server, client CPU seconds
    for r in range(args.tp_rounds):
        for side in (SEQ, PLAIN) if r % 2 == 0 else (PLAIN, SEQ):
            server_before, client_before = tree_cpu(pid), time.process_time()
            tally, elapsed = asyncio.run(
                throughput_block(url, side, c, args.tp_duration, steps, ids, r)
            )
            cpu[side][0] += cpu_since(pid, server_before)
            cpu[side][1] += time.process_time() - client_before
            runs[side].append((tally, elapsed))
            print(f"  round {r + 1} {side}: {tally.requests / elapsed:.0f} req/s", flush=True)
    rows = []
    for side, label in ((SEQ, f"with state ({steps}-step sequences)"),
                        (PLAIN, "without state (plain model)")):  # fmt: skip
        rates = [t.requests / e for t, e in runs[side]]
        seqs = [t.sequences / e for t, e in runs[side]] if side == SEQ else None
        lat = np.concatenate([np.asarray(t.latencies) for t, _ in runs[side]]) * 1000
        p50, p99 = (float(v) for v in np.percentile(lat, [50, 99]))
        failed = sum(t.failed for t, _ in runs[side])
        wrong = sum(t.wrong for t, _ in runs[side])
        requests = sum(t.requests for t, _ in runs[side])
        rows.append([label, statistics.median(seqs) if seqs else "-", statistics.median(rates),
                     p50, p99, cpu[side][0] / requests * 1e6, cpu[side][1] / requests * 1e6,
                     failed, wrong])  # fmt: skip
        for t, _ in runs[side]:
            for p in t.problems[:3]:
                print(f"  problem ({side}): {p}")
    print()
    print(f"median of {args.tp_rounds} interleaved rounds of {args.tp_duration:g} s\n")
    print(table(["requests", "sequences/s", "steps (req)/s", "p50 ms", "p99 ms",
                 "server µs CPU/req", "client µs CPU/req", "failed", "wrong"], rows))  # fmt: skip
    print(f"\nsteps/s with state ÷ without: {rows[0][2] / rows[1][2]:.3f}; server CPU per "
          f"request with ÷ without: {rows[0][5] / rows[1][5]:.3f}\n", flush=True)  # fmt: skip


# ---- 3. memory per live sequence -------------------------------------------------------------
async def open_sequences(url: str, truths: list[Truth], concurrency: int, tally: Tally,
                         model: str = SEQ) -> None:  # fmt: skip
    """START every sequence of ``truths`` (x = 1 + id % 9)."""
    queue = iter(truths)

    async def work(conn: RawHTTP, i: int) -> None:
        for truth in queue:
            await seq_step(conn, truth, float(1 + truth.id % 9), start=True, tally=tally,
                           model=model)  # fmt: skip

    await with_connections(url, concurrency, work)


async def step_sequences(url: str, truths: list[Truth], steps: int, concurrency: int,
                         mode: str, hook: bool, tally: Tally,
                         ended: dict[int, float] | None = None) -> None:  # fmt: skip
    """``steps`` more steps of every live sequence of ``truths``, the last one with END;
    ``ended[version]``: the wall-clock time of the last END that version answered."""
    queue = iter(truths)

    async def work(conn: RawHTTP, i: int) -> None:
        rng = random.Random(i)
        for truth in queue:
            for step in range(steps):
                if truth.done:
                    break
                last = step == steps - 1
                ok = await seq_step(conn, truth, float(rng.randint(1, 9)), end=last, mode=mode,
                                    hook=hook, tally=tally)  # fmt: skip
                if ok and last and ended is not None:
                    ended[truth.version] = time.time()

    await with_connections(url, concurrency, work)


def memory_part(args, workdir: Path) -> None:
    n = args.sequences
    print(f"## 3. Memory of {n:,} live sequences ({load_average()})\n", flush=True)
    repo = workdir / "memory-repo"
    sequence_yaml(repo / SEQ, max_sequences=2 * n, idle_timeout="1h")
    write_sequence_version(repo / SEQ, 1)
    server = start_server(repo, workdir, "memory")
    try:
        pid = server.process.pid
        warm = Tally()
        warm_truths = [Truth(10**9 + i) for i in range(200)]  # warm every path: START .. END
        asyncio.run(open_sequences(server.url, warm_truths, 16, warm))
        asyncio.run(step_sequences(server.url, warm_truths, 2, 16, "drain", False, warm))
        time.sleep(2)

        def settled_rss() -> int:
            samples = []
            for _ in range(5):
                samples.append(rss(pid))
                time.sleep(0.2)
            return int(statistics.median(samples))

        before = settled_rss()
        tally = Tally()
        truths = [Truth(i + 1) for i in range(n)]
        started = time.perf_counter()
        asyncio.run(open_sequences(server.url, truths, 16, tally))
        opening = time.perf_counter() - started
        time.sleep(2.5)  # the gauges are refreshed about once a second
        after = settled_rss()
        live = sum(metric(server.url, "baton_live_sequences", SEQ).values())
        gauge = sum(metric(server.url, "baton_sequence_state_bytes", SEQ).values())
        asyncio.run(step_sequences(server.url, truths, 1, 16, "drain", False, tally))
        time.sleep(2.5)
        ended = settled_rss()
        live_after = sum(metric(server.url, "baton_live_sequences", SEQ).values())
    finally:
        stop(server, "memory")
    for p in tally.problems[:5] + warm.problems[:5]:
        print(f"  problem: {p}")
    per = (after - before) / n
    rows = [
        ["RSS before (MiB)", before / MB],
        [f"RSS with {n:,} live sequences (MiB)", after / MB],
        ["RSS after ending them all (MiB)", ended / MB],
        ["RSS growth per live sequence (bytes)", f"{per:,.0f}"],
        ["baton_live_sequences", f"{live:,.0f}"],
        ["baton_sequence_state_bytes", f"{gauge:,.0f}"],
        ["gauge per live sequence (bytes)", f"{gauge / max(live, 1):,.0f}"],
        ["RSS growth ÷ gauge", f"{(after - before) / max(gauge, 1):.2f}"],
        ["baton_live_sequences after END", f"{live_after:,.0f}"],
        ["STARTs per second (concurrency 16)", f"{n / opening:,.0f}"],
        ["failed / wrong", f"{tally.failed + warm.failed} / {tally.wrong + warm.wrong}"],
    ]
    print(table(["measure", "value"], rows))
    print(flush=True)


# ---- 4. drain and migrate a swap with many live sequences ------------------------------------
DRAIN_MODES = {  # name: (sequence swap mode, the sequences are stepped through the swap)
    "drain": ("drain", False),
    "migrate": ("migrate", False),
    "drain-busy": ("drain", True),
    "migrate-busy": ("migrate", True),
}


def drain_part(args, workdir: Path) -> None:
    n = args.drain_sequences
    print(f"## 4. A swap with {n:,} live sequences ({load_average()})\n", flush=True)
    rows = []
    for name in args.drain_modes:
        rows.append(drain_one(args, workdir, name))
    print()
    print(f"idle: the sequences wait while version 2 takes over, then each takes "
          f"{args.drain_steps} more steps (the last with END); busy: 32 clients keep stepping "
          f"all of them through the swap, then {args.drain_steps} more rounds\n")  # fmt: skip
    print(table(["mode", "sequences at the swap", "live at retirement", "publish → v2 serving s",
                 "retirement → last v1 END s (client)", "sequence_drain_seconds (event)",
                 "migrated", "migration s (event)", "publish → v1 UNLOADED s", "cut",
                 "requests", "failed", "wrong", "moved"], rows))  # fmt: skip
    print(flush=True)


def drain_one(args, workdir: Path, name: str) -> list[object]:
    (mode, busy), n = DRAIN_MODES[name], args.drain_sequences
    hook = mode == "migrate"
    repo = workdir / f"drain-{name}"
    sequence_yaml(repo / SEQ, swap=mode, hook=hook, max_sequences=max(10_000, 2 * n),
                  idle_timeout="10m", drain_timeout=args.drain_timeout)  # fmt: skip
    write_sequence_version(repo / SEQ, 1, hook=hook)
    server = start_server(repo, workdir, f"drain-{name}")
    url = server.url
    # the moment the swap has happened for these sequences: retired (drain), migrated (migrate)
    swap_kind, swap_state = ("sequences", None) if hook else ("state", "DRAINING")
    try:
        tally = Tally()
        truths = [Truth(i + 1) for i in range(n)]
        asyncio.run(open_sequences(url, truths, 32, tally))
        ended: dict[int, float] = {}
        published = time.time()
        if busy:
            asyncio.run(step_through_swap(url, truths, args.drain_steps, mode, hook, tally,
                                          ended, lambda: write_sequence_version(
                                              repo / SEQ, 2, hook=hook),
                                          (swap_kind, swap_state)))  # fmt: skip
        else:
            write_sequence_version(repo / SEQ, 2, hook=hook)
            seen = lambda: find_event(url, SEQ, swap_kind, 1, swap_state) is not None  # noqa: E731
            wait_until("the swap", seen)
            asyncio.run(step_sequences(url, truths, args.drain_steps, 32, mode, hook, tally,
                                       ended))  # fmt: skip
        wait_until("version 1 to unload",
                   lambda: find_event(url, SEQ, "state", 1, "UNLOADED") is not None,
                   timeout=60 + 1.5 * args.drain_timeout_s)  # fmt: skip
        serving = find_event(url, SEQ, "state", 2, "SERVING")
        draining = find_event(url, SEQ, "state", 1, "DRAINING")
        unloaded = find_event(url, SEQ, "state", 1, "UNLOADED")
        sequences = find_event(url, SEQ, "sequences", 1, None)
    finally:
        stop(server, f"drain ({name})")
    assert serving is not None and draining is not None and unloaded is not None
    data, sdata = unloaded["data"], (sequences or {}).get("data", {})
    print(f"  {name}: v1 DRAINING {draining['time'] - published:.3f} s after publish; "
          f"UNLOADED event: {json.dumps(data)}", flush=True)  # fmt: skip
    if sequences:
        print(f"  {name}: sequences event: {sequences['message']} {json.dumps(sdata)}")
    for p in tally.problems[:5]:
        print(f"  problem ({name}): {p}")
    last_v1_end = ended.get(1)
    client_drain = last_v1_end - draining["time"] if last_v1_end else 0.0
    migrated = sum(sdata.get("migrated", {}).values()) if hook else "-"
    return [
        f"{mode}, {'busy' if busy else 'idle'}", n, data.get("sequences", "-"),
        serving["time"] - published, client_drain if mode == "drain" else "-",
        data.get("sequence_drain_seconds", "-"), migrated,
        sdata.get("seconds", "-") if hook else "-", unloaded["time"] - published,
        data.get("sequences_cut", "-"), tally.requests, tally.failed, tally.wrong, tally.moved,
    ]  # fmt: skip


async def step_through_swap(url: str, truths: list[Truth], after: int, mode: str, hook: bool,
                            tally: Tally, ended: dict[int, float], publish: Callable[[], object],
                            swap: tuple[str, str | None], concurrency: int = 32,
                            timeout: float = 120) -> None:  # fmt: skip
    """32 clients step every sequence of ``truths`` in turn while ``publish()`` brings a new
    version, until the ``swap`` event (kind, state) of version 1 is seen; then ``after`` more
    rounds, the last with END (``ended[version]``: when that version answered its last END)."""
    swapped = asyncio.Event()

    async def watch() -> None:
        kind, state = swap
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            while time.monotonic() < deadline:
                r = await http.get("/admin/events", params={"model": SEQ, "limit": 10_000})
                if any(e["kind"] == kind and e["version"] == 1
                       and (state is None or e["state"] == state) for e in r.json()):  # fmt: skip
                    swapped.set()
                    return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"no {kind} {state or ''} event of version 1 in {timeout} s")

    async def work(conn: RawHTTP, i: int) -> None:
        rng = random.Random(i)
        mine = truths[i::concurrency]
        rounds_after = 0
        while rounds_after < after:
            if swapped.is_set():
                rounds_after += 1
            last = rounds_after == after
            for truth in mine:
                if truth.done:
                    continue
                ok = await seq_step(conn, truth, float(rng.randint(1, 9)), end=last, mode=mode,
                                    hook=hook, tally=tally)  # fmt: skip
                if ok and last:
                    ended[truth.version] = time.time()

    watcher = asyncio.create_task(watch())
    stepping = asyncio.create_task(with_connections(url, concurrency, work))
    await asyncio.to_thread(publish)
    await watcher
    await stepping


# ---- 5. soak: sequences through swaps, canaries and rollbacks ---------------------------------
RELAXED_GATES = {
    "max_error_rate": None, "max_p99_ratio": None, "max_class_drift": None,
    "max_mean_shift": None, "min_shadow_agreement": None, "min_requests": 1,
}  # fmt: skip

SOAKS = {
    # name: (sequence swap mode, migrate hook, what each new version goes through: None = an
    # immediate swap; "promote" = a canary with relaxed gates, promoted; "abort" = a canary
    # that stays at 50 % until it is rolled back (rollout abort); "pin" = an immediate swap,
    # then `baton rollback` (a pin of the version before), then `baton unpin`)
    "drain": ("drain", False, None),
    "migrate": ("migrate", True, None),
    "canary": ("drain", False, "promote"),
    "canary-migrate": ("migrate", True, "promote"),
    "rollback": ("drain", False, "abort"),
    "rollback-migrate": ("migrate", True, "abort"),
    "pin-rollback": ("drain", False, "pin"),
    "pin-rollback-migrate": ("migrate", True, "pin"),
}


def soak_part(args, workdir: Path) -> None:
    print(f"## 5. Soak: {args.soak_concurrency} concurrent sequences of {args.soak_steps} steps, "
          f"a new version every {args.swap_every:g} s for {args.duration:g} s "
          f"({load_average()})\n", flush=True)  # fmt: skip
    rows = []
    for kind in args.soaks:
        rows.append(soak_one(args, workdir, kind))
        r = rows[-1]
        print(f"  {kind}: {r[4]} sequences, {r[5]} requests, {r[6]} failed, {r[7]} broken, "
              f"{r[9]:.0f} req/s ({load_average()})", flush=True)  # fmt: skip
    print()
    print(table(["run", "versions published", "versions answering", "rollouts",
                 "sequences", "requests",
                 "failed", "broken", "moved", "req/s", "p50 ms", "p99 ms",
                 "live at retirements", "migrated", "ended before migrated",
                 "longest sequence drain s",
                 "cut by server", "live after"], rows))  # fmt: skip
    print(flush=True)


async def raw_soak(url: str, concurrency: int, steps: int, duration: float, mode: str,
                   hook: bool, seed: int = 0) -> tuple[Tally, float]:  # fmt: skip
    """``drive``'s closed loop and ground truth on the lean client: each of ``concurrency``
    clients runs ``steps``-step sequences back to back for ``duration`` seconds (finishing the
    one it is in); (tally, elapsed seconds). The clients' first sequences are shorter (1 to
    ``steps`` steps, spread evenly), so that STARTs are spread over time: sequences that all
    start together stay in step and START in bursts, which a short canary can fall between."""
    ids = itertools.count(seed * 10_000_000 + 1)
    tallies = [Tally() for _ in range(concurrency)]
    deadline = time.monotonic() + duration

    async def work(conn: RawHTTP, i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        first = 1 + i * steps // concurrency
        await whole_sequence(conn, next(ids), first, rng, tallies[i], mode, hook)
        while time.monotonic() < deadline:
            await whole_sequence(conn, next(ids), steps, rng, tallies[i], mode, hook)

    elapsed = await with_connections(url, concurrency, work)
    total = Tally()
    for t in tallies:
        total.add(t)
    return total, elapsed


async def drive_soak(url: str, concurrency: int, steps: int, duration: float, mode: str,
                     hook: bool) -> tuple[Tally, float]:  # fmt: skip
    """The same through :func:`baton.dev.sequence_traffic.drive` (httpx)."""
    run = await drive(url, SEQ, concurrency=concurrency, steps=steps, duration=duration,
                      mode=mode, hook=hook)  # fmt: skip
    tally = Tally(requests=run.requests, sequences=run.sequences, failed=run.failed,
                  broken=run.broken, moved=run.moved, latencies=run.latencies,
                  problems=run.problems, versions={int(v) for v in run.versions})  # fmt: skip
    return tally, run.seconds


def soak_one(args, workdir: Path, kind: str) -> list[object]:
    mode, hook, rollout = SOAKS[kind]
    repo = workdir / f"soak-{kind}"
    settings = None
    if rollout == "promote":
        settings = {"mode": "canary", "steps": [10, 50, 100], "interval": args.canary_interval,
                    "gates": RELAXED_GATES}  # fmt: skip
    elif rollout == "abort":  # the canary stays at 50 % until it is rolled back
        settings = {"mode": "canary", "steps": [50, 100], "interval": "1h",
                    "gates": RELAXED_GATES}  # fmt: skip
    sequence_yaml(repo / SEQ, swap=mode, hook=hook, max_sequences=100_000, rollout=settings)
    write_sequence_version(repo / SEQ, 1, hook=hook)
    env = {"BATON_ROLLOUT_PERIOD": "0.1"} if rollout else None
    server = start_server(repo, workdir, f"soak-{kind}", env=env)
    published, finished, problems = [1], [], []
    try:

        async def publisher() -> None:
            """A new version every ``swap_every`` s; a canary is followed to its end (promoted,
            or rolled back after ``--hold`` s at 50 %) before the next version comes. None in
            the last period, so that every canary has traffic to finish with."""
            version, started = 1, time.monotonic()
            due = started + args.swap_every
            while due < started + args.duration - args.swap_every:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                version += 1
                await asyncio.to_thread(write_sequence_version, repo / SEQ, version, hook=hook)
                published.append(version)
                try:
                    if rollout == "promote":
                        finished.append(await rollout_end(server.url, version, 30))
                    elif rollout == "abort":
                        await abort_canary(server.url, version, args.hold)
                        finished.append(await rollout_end(server.url, version, 30))
                    elif rollout == "pin":
                        await operator_rollback(server.url, version, args.hold / 2)
                        finished.append("ROLLBACK+UNPIN")
                except Exception as exc:  # reported with the results; the soak goes on
                    problems.append(f"v{version}: {exc}")
                due = max(due + args.swap_every, time.monotonic())

        async def soak() -> tuple[Tally, float]:
            task = asyncio.create_task(publisher())
            load = raw_soak if args.soak_client == "raw" else drive_soak
            result = await load(server.url, args.soak_concurrency, args.soak_steps,
                                args.duration, mode, hook)  # fmt: skip
            await task
            return result

        run, seconds = asyncio.run(soak())
        time.sleep(2)
        live_after = sum(metric(server.url, "baton_live_sequences", SEQ).values())
        entries = audit_entries(server.url)
    finally:
        stop(server, f"soak {kind}")
    if args.timeline:
        timeline(entries)
    unloaded = [e for e in entries if e["kind"] == "state" and e["state"] == "UNLOADED"]
    data = [e.get("data") or {} for e in unloaded]
    retired_live = sum(d.get("sequences", 0) for d in data)
    cut = sum(d.get("sequences_cut", 0) for d in data)
    forced = sum(1 for d in data if d.get("forced"))
    drains = [d["sequence_drain_seconds"] for d in data if d.get("sequences")]
    retirements = [e.get("data") or {} for e in entries
                   if e["kind"] == "sequences" and e["state"] == "migrate"]  # fmt: skip
    migrated = sum(sum(d.get("migrated", {}).values()) for d in retirements)
    stayed = sum(sum(d.get("stayed", {}).values()) for d in retirements)
    # live at retirement, neither migrated nor kept back (nor cut): ended before their turn
    ended_first = (
        sum(d.get("live", 0) for d in retirements)
        - migrated
        - stayed
        - sum(d.get("cut", 0) for d in retirements)
    )
    for p in run.problems[:5] + problems[:5]:
        print(f"  problem ({kind}): {p}")
    if forced:
        print(f"  problem ({kind}): {forced} forced unloads (drain_timeout)")
    lat = np.asarray(run.latencies) * 1000
    p50, p99 = (float(v) for v in np.percentile(lat, [50, 99])) if lat.size else (0.0, 0.0)
    ends = {status: finished.count(status) for status in sorted(set(finished))}
    canaries = ", ".join(f"{n} {status.lower()}" for status, n in ends.items()) or "-"
    return [kind, len(published), len(run.versions), canaries, run.sequences, run.requests,
            run.failed, run.broken, run.moved, run.requests / seconds, p50, p99, retired_live,
            migrated if mode == "migrate" else "-", ended_first if mode == "migrate" else "-",
            max(drains, default=0.0), cut, int(live_after)]  # fmt: skip


def timeline(entries: list[dict]) -> None:
    """The model's events, one line each (--timeline)."""
    t0 = entries[0]["time"] if entries else 0.0
    for e in entries:
        if e["model"] != SEQ or e["kind"] in ("memory", "rate_limit"):
            continue
        data = {k: v for k, v in (e.get("data") or {}).items() if k not in ("gates", "steps")}
        print(
            f"    {e['time'] - t0:7.3f} {e['kind']:10} v{e['version']} {e['state'] or ''} "
            f"{e['reason'] or ''} {json.dumps(data)[:160]}"
        )


async def rollout_view(http: httpx.AsyncClient) -> dict:
    r = await http.get(f"/admin/models/{SEQ}/rollout")
    return r.json() if r.status_code == 200 else {}


async def rollout_end(url: str, version: int, timeout: float = 60) -> str:
    """How the rollout to ``version`` ended (PROMOTED, ROLLED_BACK, ABORTED)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while time.monotonic() < deadline:
            doc = await rollout_view(http)
            last = doc.get("last") or {}
            if doc.get("rollout") is None and last.get("candidate") == version:
                return last["status"]
            await asyncio.sleep(0.05)
    raise RuntimeError(f"the rollout to v{version} did not end in {timeout} s: {doc}")


async def abort_canary(url: str, version: int, hold: float, timeout: float = 60) -> None:
    """Wait for ``version``'s canary to run, let sequences start on it for ``hold`` seconds,
    then roll it back (``baton rollout abort``)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        while True:
            doc = (await rollout_view(http)).get("rollout") or {}
            if doc.get("candidate") == version and doc.get("status") == "RUNNING":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"no running canary of v{version} in {timeout} s")
            await asyncio.sleep(0.05)
        await asyncio.sleep(hold)
        r = await http.post(f"/admin/models/{SEQ}/rollout/abort")
        r.raise_for_status()


async def operator_rollback(url: str, version: int, hold: float) -> None:
    """Once ``version`` serves: ``hold`` s, ``baton rollback`` (pins the version before),
    ``hold`` s, ``baton unpin`` (``version`` serves again)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def default_is(v: int, timeout: float = 60) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                doc = (await http.get(f"/admin/models/{SEQ}")).json()
                states = {x["version"]: x["state"] for x in doc["versions"]}
                if doc["default_version"] == v and states.get(v) == "SERVING":
                    return
                await asyncio.sleep(0.05)
            raise RuntimeError(f"version {v} did not become the default in {timeout} s: {doc}")

        await default_is(version)
        await asyncio.sleep(hold)
        (await http.post(f"/admin/models/{SEQ}/rollback")).raise_for_status()
        await default_is(version - 1)
        await asyncio.sleep(hold)
        (await http.delete(f"/admin/models/{SEQ}/pin")).raise_for_status()
        await default_is(version)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.split("\n")[1:]))  # fmt: skip
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    words = lambda s: s.split(",")  # noqa: E731
    parser.add_argument("--parts", type=words, help="of latency,throughput,memory,drain,soak",
                        default=["latency", "throughput", "memory", "drain", "soak"])  # fmt: skip
    parser.add_argument("--rounds", type=int, default=10, help="latency: interleaved rounds")
    parser.add_argument("--block", type=int, default=1000, help="latency: requests per block")
    parser.add_argument("--latency-concurrency", type=ints, default=[1, 16])
    parser.add_argument("--steps", type=int, default=10, help="latency: steps per sequence")
    parser.add_argument("--tp-concurrency", type=int, default=32)
    parser.add_argument("--tp-steps", type=int, default=10)
    parser.add_argument("--tp-duration", type=float, default=10.0)
    parser.add_argument("--tp-rounds", type=int, default=3)
    parser.add_argument("--sequences", type=int, default=10_000, help="memory: live sequences")
    parser.add_argument("--drain-sequences", type=int, default=1000)
    parser.add_argument("--drain-steps", type=int, default=3, help="steps after the swap")
    parser.add_argument("--drain-modes", type=words, default=list(DRAIN_MODES),
                        help=", ".join(DRAIN_MODES))  # fmt: skip
    parser.add_argument("--drain-timeout", default="5m", help="the model's sequence drain_timeout")
    parser.add_argument("--soaks", type=words, default=list(SOAKS), help=", ".join(SOAKS))
    parser.add_argument("--duration", type=float, default=60.0, help="soak: seconds of swaps")
    parser.add_argument("--swap-every", type=float, default=2.0)
    parser.add_argument("--soak-concurrency", type=int, default=200)
    parser.add_argument("--soak-steps", type=int, default=50)
    parser.add_argument("--soak-client", choices=["raw", "drive"], default="raw",
                        help="soak: the lean client, or baton.dev.sequence_traffic.drive "
                             "(httpx: far more client CPU per request)")  # fmt: skip
    parser.add_argument("--canary-interval", default="0.3s", help="canary soak: per step")
    parser.add_argument("--hold", type=float, default=1.0,
                        help="rollback soaks: seconds a canary runs before it is rolled back "
                             "(pin-rollback: half before rollback, half before unpin)")  # fmt: skip
    parser.add_argument("--timeline", action="store_true", help="soak: print every event")
    args = parser.parse_args()
    unknown = set(args.soaks) - set(SOAKS)
    if unknown:
        parser.error(f"unknown soaks {sorted(unknown)}; choose from {', '.join(SOAKS)}")
    args.drain_timeout_s = parse_duration(args.drain_timeout)
    uvloop.install()
    print(f"# bench/sequences.py — {machine()} — {stamp()} — {load_average()}\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="baton-bench-sequences-") as tmp:
        workdir = Path(tmp)
        ids = itertools.count(1)
        if {"latency", "throughput"} & set(args.parts):
            repo = workdir / "latency-repo"
            write_version(repo / PLAIN, 1, affine_model(0.0, width=1))
            sequence_yaml(repo / SEQ)
            write_sequence_version(repo / SEQ, 1)
            write_version(repo / CLIENT, 1, running_sum_model(1.0, width=STATE_FLOATS))
            server = start_server(repo, workdir, "latency")
            try:
                if "latency" in args.parts:
                    latency_part(args, server, ids)
                if "throughput" in args.parts:
                    throughput_part(args, server, ids)
            finally:
                stop(server, "latency / throughput")
        if "memory" in args.parts:
            memory_part(args, workdir)
        if "drain" in args.parts:
            drain_part(args, workdir)
        if "soak" in args.parts:
            soak_part(args, workdir)
    print(f"done — {load_average()}")


if __name__ == "__main__":
    main()
