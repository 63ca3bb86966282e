"""Soak test: 1,000 publications, one in ten of them bad, into a signature-checking Baton under
closed-loop load.

    python bench/soak.py [--publications 1000] [--clients 3] [--floats 2000000]

A real ``baton serve --trusted-key PUB --require-signature`` serves model ``m`` from a temporary
repository. Version v computes y = x + v (``affine_model(v)``, padded with ``--floats`` unused
floats to about 8 MB), so every answer names the version that computed it and can be checked.
Version 1 is published first; then each publication adds the next version number, one after
another, and waits until the server has settled on it:

- nine in ten are good: ``publish(..., sign_key=...)`` (atomic); settled = SERVING as default;
- one in ten is bad, cycling through ten kinds. All but the last are crafted with the artifact
  functions in a staging repository, so each is wrong for exactly one reason, then renamed into
  the served repository at once; settled = FAILED (or SERVING, which fails the run):

  | kind | how | expected reason |
  |---|---|---|
  | truncated model | signed, then model.onnx cut to half | size_mismatch (or hash_mismatch) |
  | random bytes | model.onnx replaced by random bytes, manifest re-hashed, re-signed | load_error |
  | renamed input | a signed model whose input is ``input``, not ``x`` | incompatible_signature |
  | input dtype | a signed model taking FP64 | incompatible_signature |
  | NaN output | a signed model computing x * NaN + v | non_finite_output |
  | unsigned | published without a key | unsigned |
  | bad signature | a signed manifest whose description was altered afterwards | bad_signature |
  | hash mismatch | signed, then one byte of model.onnx flipped | hash_mismatch |
  | missing file | signed with a notes.txt beside the model, then notes.txt deleted | missing_file |
  | slow partial write | written straight into ``m/<v>`` in small chunks, stalling halfway | any |

  The slow partial write is a good signed version copied non-atomically: alternately manifest
  first or model first, the model in small chunks, stalling halfway through it until the server
  has judged the half-written directory (complete by its two-poll rule). It must not serve
  while partial, and a rejection must carry a reason; once the files are complete the server
  may retry it (a FAILED version is retried when its files change). The table reports what
  happened.

Meanwhile ``--clients`` threads send requests to ``m`` (no version) back to back and check each
answer: status 200, ``model_version`` not a rejected version, values equal to x + version.
Version directories older than the serving version are deleted as it settles.

Targets (PASS only if all hold):

- every good version is SERVING as default within ``--settle-timeout``;
- every bad version ends FAILED with its expected reason, while the previous good version
  stays the SERVING default;
- the slow partial write never serves while partial, any rejection has a reason, and it
  settles (served or failed) within ``--settle-timeout`` once complete;
- the clients see 0 failed and 0 wrong answers;
- the server's RSS (VmRSS) at the end, old versions unloaded, is within one model size of its
  RSS after the first load (also printed: RSS after a good swap about every tenth of the run,
  and the median RSS the moment each kind of publication settled);
- the server leaves no verified copy (``baton-verified-*``) in its TMPDIR, and exits 0 on
  SIGTERM.

The server log, its audit log, one JSON line per publication and the memory readings are kept
in a directory that is printed (it is not deleted).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import onnx
import orjson
from onnx import TensorProto

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.artifacts.manifest import MANIFEST, hash_file, read_manifest, write_manifest
from baton.artifacts.publish import publish
from baton.artifacts.signing import generate_key_pair, load_private_key, sign_manifest
from baton.dev.demo import affine_model
from baton.dev.testing import ServerProcess
from bench.common import machine, percentiles, stamp, table

MODEL = "m"
ONNX = "model.onnx"
SLOW = "slow partial write"
SNAPSHOTS = "baton-verified-"


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Run:
    """Where things are, and how the run is configured."""

    url: str
    repo: Path  # served
    staging: Path  # where bad versions are crafted before they are renamed into ``repo``
    sources: Path  # model files to publish
    sign_key: Path
    floats: int
    timeout: float  # --settle-timeout
    pid: int
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def model(self) -> dict:
        r = self.http.get(f"/admin/models/{MODEL}")
        r.raise_for_status()
        return r.json()

    def wait(self, done: Callable[[dict], bool], timeout: float | None = None) -> tuple[dict, bool]:
        """Poll the admin API until ``done(model)``; (last model view, whether it came)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            model = self.model()
            if done(model):
                return model, True
            if time.monotonic() > deadline:
                return model, False
            time.sleep(0.03)

    def events(self, version: int) -> list[dict]:
        r = self.http.get("/admin/events", params={"model": MODEL, "limit": 1000})
        return [e for e in r.json() if e["version"] == version and e["kind"] == "state"]


def entry(model: dict, version: int) -> dict:
    found = [v for v in model["versions"] if v["version"] == version]
    return found[0] if found else {"state": "ABSENT", "reason": None, "message": None}


def serving_default(model: dict, version: int) -> bool:
    return model["default_version"] == version and entry(model, version)["state"] == "SERVING"


def judged(model: dict, version: int) -> bool:
    return entry(model, version)["state"] in ("FAILED", "SERVING")


# --- the load ----------------------------------------------------------------------------------


class Load:
    """Closed-loop clients checking every answer; ``rejected`` holds versions that must never
    answer, ``phase`` says what the publisher is doing (for the examples of bad answers)."""

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.rejected: set[int] = set()
        self.phase = "start"
        self.latencies: list[list[float]] = [[] for _ in range(clients)]
        self.failed: list[str] = []
        self.wrong: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            if t.ident is not None:  # started
                t.join()

    @property
    def requests(self) -> int:
        return sum(map(len, self.latencies)) + len(self.failed)

    def _client(self, index: int) -> None:
        rng = np.random.default_rng(index)
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self._stop.is_set():
                x = rng.standard_normal(4).astype(np.float32)
                tensor = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": x.tolist()}
                started = time.perf_counter()
                try:
                    r = http.post(
                        f"/v2/models/{MODEL}/infer", content=orjson.dumps({"inputs": [tensor]})
                    )
                except httpx.HTTPError as exc:
                    self._note(self.failed, f"{type(exc).__name__}: {exc}")
                    continue
                if r.status_code != 200:
                    self._note(self.failed, f"{r.status_code} {r.text[:200]}")
                    continue
                self.latencies[index].append(time.perf_counter() - started)
                problem = self._check(r, x)
                if problem:
                    self._note(self.wrong, problem)

    def _check(self, r: httpx.Response, x: np.ndarray) -> str | None:
        try:
            doc = r.json()
            version = int(doc["model_version"])
            y = next(o["data"] for o in doc["outputs"] if o["name"] == "y")
        except (ValueError, KeyError, TypeError, StopIteration):
            return f"malformed answer: {r.text[:200]}"
        if version in self.rejected:
            return f"answered by rejected version {version}"
        if not np.allclose(y, x + version, atol=1e-5):
            return f"version {version}: y = {y} for x = {x.tolist()}"
        return None

    def _note(self, where: list[str], what: str) -> None:
        with self._lock:
            where.append(f"{time.strftime('%H:%M:%S')} during {self.phase}: {what}")


# --- crafting versions -------------------------------------------------------------------------


def published(
    run: Run, version: int, repo: Path, *, signed: bool = True, notes: bool = False, **model_args
) -> Path:
    """Publish version ``version`` (y = x + version unless ``model_args`` say otherwise) into
    ``repo`` with :func:`publish`; with ``notes``, a notes.txt rides along as a second file."""
    source = run.sources / str(version)
    source.mkdir()
    try:
        model = affine_model(float(version), padding_floats=run.floats, **model_args)
        onnx.save(model, str(source / ONNX))
        if notes:
            (source / "notes.txt").write_text(f"version {version}\n")
        key = run.sign_key if signed else None
        return publish(
            source if notes else source / ONNX, repo, MODEL, version=version, sign_key=key
        )
    finally:
        shutil.rmtree(source)


def staged(run: Run, version: int, **options) -> Path:
    return published(run, version, run.staging, **options)


def resign(run: Run, directory: Path) -> None:
    """Re-hash model.onnx into the manifest and sign it afresh: a valid, signed manifest."""
    manifest = read_manifest(directory)
    digest = hash_file(directory / ONNX)
    manifest.body["files"][ONNX] = {"size": digest.size, "sha256": digest.sha256}
    manifest.signatures = []
    sign_manifest(manifest, load_private_key(run.sign_key))
    write_manifest(directory, manifest)


def truncated(run: Run, version: int) -> Path:
    d = staged(run, version)
    os.truncate(d / ONNX, (d / ONNX).stat().st_size // 2)
    return d


def random_bytes(run: Run, version: int) -> Path:
    d = staged(run, version)
    (d / ONNX).write_bytes(os.urandom((d / ONNX).stat().st_size))
    resign(run, d)
    return d


def renamed_input(run: Run, version: int) -> Path:
    return staged(run, version, input_name="input")


def input_dtype(run: Run, version: int) -> Path:
    return staged(run, version, datatype=TensorProto.DOUBLE)


def nan_output(run: Run, version: int) -> Path:
    return staged(run, version, scale=float("nan"))


def unsigned(run: Run, version: int) -> Path:
    return staged(run, version, signed=False)


def bad_signature(run: Run, version: int) -> Path:
    d = staged(run, version)
    manifest = read_manifest(d)
    manifest.body["description"] = "altered after signing"
    write_manifest(d, manifest)  # the signature over the original body is kept
    return d


def hash_mismatch(run: Run, version: int) -> Path:
    d = staged(run, version)
    with open(d / ONNX, "r+b") as f:
        f.seek((d / ONNX).stat().st_size // 2)  # inside the padding: still a loadable model
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    return d


def missing_file(run: Run, version: int) -> Path:
    d = staged(run, version, notes=True)
    (d / "notes.txt").unlink()  # the model itself is intact and would answer correctly
    return d


@dataclass(frozen=True)
class BadKind:
    name: str
    expected: frozenset[str]  # empty: any reason will do
    craft: Callable[[Run, int], Path] | None  # None: the slow partial write


BAD_KINDS = [
    BadKind("truncated model", frozenset({"size_mismatch", "hash_mismatch"}), truncated),
    BadKind("random bytes", frozenset({"load_error"}), random_bytes),
    BadKind("renamed input", frozenset({"incompatible_signature"}), renamed_input),
    BadKind("input dtype", frozenset({"incompatible_signature"}), input_dtype),
    BadKind("NaN output", frozenset({"non_finite_output"}), nan_output),
    BadKind("unsigned", frozenset({"unsigned"}), unsigned),
    BadKind("bad signature", frozenset({"bad_signature"}), bad_signature),
    BadKind("hash mismatch", frozenset({"hash_mismatch"}), hash_mismatch),
    BadKind(SLOW, frozenset(), None),
    BadKind("missing file", frozenset({"missing_file"}), missing_file),
]


# --- publications ------------------------------------------------------------------------------


def publish_good(run: Run, version: int) -> dict:
    published(run, version, run.repo)
    appeared = time.monotonic()
    model, ok = run.wait(
        lambda m: serving_default(m, version) or entry(m, version)["state"] == "FAILED"
    )
    e = entry(model, version)
    return {
        "served": serving_default(model, version),
        "state": e["state"],
        "reason": e["reason"],
        "message": e["message"],
        "timed_out": not ok,
        "settle_s": round(time.monotonic() - appeared, 3),
    }


def publish_bad(run: Run, load: Load, version: int, kind: BadKind, good: int) -> dict:
    crafted = kind.craft(run, version)
    load.rejected.add(version)
    os.replace(crafted, run.repo / MODEL / str(version))
    appeared = time.monotonic()
    model, ok = run.wait(lambda m: judged(m, version))
    e = entry(model, version)
    return {
        "served": False,
        "state": e["state"],
        "reason": e["reason"],
        "message": e["message"],
        "timed_out": not ok,
        "kept_serving": serving_default(model, good),
        "expected": e["state"] == "FAILED" and e["reason"] in kind.expected,
        "settle_s": round(time.monotonic() - appeared, 3),
    }


def write_slowly(f, data: bytes, chunks: int = 8, pause: float = 0.02) -> None:
    step = max(1, len(data) // chunks)
    for i in range(0, len(data), step):
        f.write(data[i : i + step])
        time.sleep(pause)


def publish_slow_partial(run: Run, load: Load, version: int, good: int, model_first: bool) -> dict:
    """Copy a good signed version into ``m/<version>`` non-atomically, stalling halfway through
    model.onnx until the server has judged what it sees (or ``--settle-timeout`` passed)."""
    signed = staged(run, version)
    target = run.repo / MODEL / str(version)
    load.rejected.add(version)  # until the last byte is written, no answer may come from it
    target.mkdir()
    partial: dict = {}
    for name in [ONNX, MANIFEST] if model_first else [MANIFEST, ONNX]:
        data = (signed / name).read_bytes()
        with open(target / name, "wb", buffering=0) as f:
            if name != ONNX:
                f.write(data)
                continue
            write_slowly(f, data[: len(data) // 2])
            model, ok = run.wait(lambda m: judged(m, version))
            partial = entry(model, version) | {
                "kept_serving": serving_default(model, good),
                "timed_out": not ok,
            }
            write_slowly(f, data[len(data) // 2 :])
    load.rejected.discard(version)
    complete = time.monotonic()
    shutil.rmtree(signed)
    model, ok = run.wait(lambda m: serving_default(m, version))
    settle = round(time.monotonic() - complete, 3)
    e = entry(model, version)
    trace = " → ".join(
        f"{ev['state']}({ev['reason']})" if ev["reason"] else ev["state"]
        for ev in run.events(version)
    )
    return {
        "served": ok,
        "state": e["state"],
        "reason": e["reason"],
        "message": e["message"],
        "order": "model first" if model_first else "manifest first",
        "partial": partial,
        "trace": trace,
        "kept_serving": partial.get("kept_serving", False),
        "settle_s": settle,
    }


def kind_of(publication: int, bad_every: int) -> BadKind | None:
    if publication % bad_every:
        return None
    return BAD_KINDS[(publication // bad_every - 1) % len(BAD_KINDS)]


def remove_older(run: Run, below: int) -> None:
    """Delete version directories older than ``below`` (the serving version)."""
    for d in (run.repo / MODEL).iterdir():
        if d.name.isdigit() and int(d.name) < below:
            shutil.rmtree(d)


def publish_all(
    run: Run, load: Load, count: int, bad_every: int, log: Path, rss: list[tuple[int, int]]
) -> list[dict]:
    """Versions 2 .. count + 1, one after another; one JSON line each in ``log``; the server's
    RSS (old versions unloaded) appended to ``rss`` after a good version about every tenth of
    the way."""
    records, good, slow_seen = [], 1, 0
    every = max(1, count // 10)
    sample_at = every
    with log.open("w") as out:
        for publication in range(1, count + 1):
            version = publication + 1
            kind = kind_of(publication, bad_every)
            load.phase = f"publication {publication} (v{version}, {kind.name if kind else 'good'})"
            started = time.monotonic()
            if kind is None:
                record = publish_good(run, version)
            elif kind.craft is None:
                record = publish_slow_partial(run, load, version, good, slow_seen % 2 == 1)
                slow_seen += 1
            else:
                record = publish_bad(run, load, version, kind, good)
            record |= {
                "publication": publication,
                "version": version,
                "previous": good,
                "kind": kind.name if kind else "good",
                "seconds": round(time.monotonic() - started, 3),
                "rss_mb": round(memory(run.pid)["VmRSS"] / 1e6, 1),  # at once, not settled
            }
            out.write(json.dumps(record) + "\n")
            out.flush()
            records.append(record)
            if record["served"]:
                good = version
                remove_older(run, good)
            if kind is None and record["served"] and publication >= sample_at:
                rss.append((publication, settled_rss(run)))  # after a swap, like the first load
                sample_at += every
            if publication % 50 == 0:
                print(
                    f"{stamp()} {publication}/{count} published, v{good} serving, "
                    f"{load.requests} requests",
                    file=sys.stderr,
                    flush=True,
                )
    return records


# --- memory and the server ---------------------------------------------------------------------


def memory(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def settled_rss(run: Run) -> int:
    """The server's RSS once every version but the default is unloaded."""
    run.wait(old_versions_unloaded)
    time.sleep(0.5)
    return memory(run.pid)["VmRSS"]


def old_versions_unloaded(model: dict) -> bool:
    return all(
        v["state"] in ("UNLOADED", "AVAILABLE", "FAILED")
        for v in model["versions"]
        if v["version"] != model["default_version"]
    )


def start_server(repo: Path, work: Path, kept: Path, pub: Path, poll: float) -> ServerProcess:
    (work / "tmp").mkdir()
    return ServerProcess.start(
        repo,
        kept / "server.log",
        poll_interval=poll,
        timeout=120,
        args=("--trusted-key", str(pub), "--require-signature"),
        env={"TMPDIR": str(work / "tmp"), "BATON_COMPILE_CACHE_KEY": str(work / "cache.key")},
    )


# --- report ------------------------------------------------------------------------------------

Check = tuple[str, bool]


def spread(values: list[float]) -> list[float]:
    """Median, p99 and max (NaN when empty)."""
    if not values:
        return [float("nan")] * 3
    return [*np.percentile(values, [50, 99]).tolist(), max(values)]


def good_section(records: list[dict]) -> tuple[str, list[Check]]:
    good = [r for r in records if r["kind"] == "good"]
    served = [r for r in good if r["served"]]
    row = ["", len(good), len(served), *spread([r["settle_s"] for r in served])]
    row.append(spread([r["rss_mb"] for r in good])[0])
    heads = [
        "good versions",
        "published",
        "served as default",
        "median s",
        "p99 s",
        "max s",
        "RSS after, MB",
    ]
    lines = [
        table(heads, [row]),
        "(s: from the version's appearance to SERVING as default; RSS after: the server's, the "
        "moment each settled, median)",
    ]
    lines += [
        f"  v{r['version']} not served: {r['state']} {r['reason']} {r['message']}"
        for r in good
        if not r["served"]
    ]
    return "\n".join(lines), [
        (f"good versions served: {len(served)}/{len(good)}", len(served) == len(good))
    ]


def bad_ok(record: dict) -> bool:
    return record["expected"] and record["kept_serving"]


def slow_ok(record: dict) -> bool:
    """Never served while partial, any rejection has a reason, and settled once complete."""
    partial = record["partial"]
    judgements = [
        (partial.get("state"), partial.get("reason")),
        (record["state"], record["reason"]),
    ]
    reasoned = all(reason for state, reason in judgements if state == "FAILED")
    settled = record["served"] or record["state"] == "FAILED"
    return partial.get("state") != "SERVING" and reasoned and settled


def bad_row(kind: BadKind, mine: list[dict]) -> list[object]:
    if kind.craft is None:
        judged_as = [r["partial"] for r in mine]
        expected, ok = "any; never served while partial", all(map(slow_ok, mine))
    else:
        judged_as = mine
        expected, ok = " or ".join(sorted(kind.expected)), all(map(bad_ok, mine))
    rejected = sum(j.get("state") == "FAILED" for j in judged_as)
    reasons = Counter(str(j.get("reason")) for j in judged_as)
    seen = ", ".join(f"{reason} x{n}" for reason, n in reasons.most_common())
    kept = sum(bool(r["kept_serving"]) for r in mine)
    settle = spread([r["settle_s"] for r in mine])[0]
    rss = spread([r["rss_mb"] for r in mine])[0]
    return [
        kind.name,
        len(mine),
        rejected,
        seen,
        expected,
        f"{kept}/{len(mine)}",
        settle,
        rss,
        "yes" if ok else "NO",
    ]


def bad_section(records: list[dict]) -> tuple[str, list[Check]]:
    rows = []
    for kind in BAD_KINDS:
        mine = [r for r in records if r["kind"] == kind.name]
        if mine:
            rows.append(bad_row(kind, mine))
    heads = [
        "bad kind",
        "published",
        "rejected",
        "reason(s) seen",
        "expected",
        "previous kept serving",
        "median s",
        "RSS after, MB",
        "as expected?",
    ]
    lines = [
        table(heads, rows),
        "(rejected and reasons: for the slow partial write, while partial)",
    ]
    ok = all(row[-1] == "yes" for row in rows)
    lines += [
        f"  v{r['version']} {r['kind']}: {r['state']} {r['reason']}: {r['message']}"
        for r in records
        if r["kind"] not in ("good", SLOW) and not bad_ok(r)
    ]
    slow = [r for r in records if r["kind"] == SLOW]
    if slow:
        lines += [
            "",
            f"{SLOW}s, one by one:",
            table(
                ["version", "order", "while partial", "once complete", "s", "states (events)"],
                [slow_row(r) for r in slow],
            ),
        ]
    return "\n".join(lines), [("every bad version rejected as expected, previous kept serving", ok)]


def slow_row(r: dict) -> list[object]:
    p = r["partial"]
    while_partial = f"{p.get('state')}({p.get('reason')})" + (" timed out" * p["timed_out"])
    after = "SERVING" if r["served"] else f"{r['state']}({r['reason']})"
    return [r["version"], r["order"], while_partial, after, r["settle_s"], r["trace"]]


def load_section(load: Load) -> tuple[str, list[Check]]:
    p50, p99 = percentiles(np.array([t for lat in load.latencies for t in lat]))
    row = ["", load.requests, len(load.failed), len(load.wrong), p50, p99]
    lines = [table(["load", "requests", "failed", "wrong", "p50 ms", "p99 ms"], [row])]
    lines += [f"  failed: {what}" for what in load.failed[:10]]
    lines += [f"  wrong: {what}" for what in load.wrong[:10]]
    return "\n".join(lines), [
        ("no failed and no wrong answers", not load.failed and not load.wrong)
    ]


def memory_section(mem: dict, size: int) -> tuple[str, list[Check]]:
    if "end" not in mem:
        return "memory: not measured", [("RSS measured", False)]
    mb = lambda b: f"{b / 1e6:.2f}"  # noqa: E731
    limit = mem["first"] + size
    verdict = "within" if mem["end"] <= limit else "over"
    rows = [
        ["RSS after first load", mb(mem["first"]), ""],
        [
            "RSS at the end",
            mb(mem["end"]),
            f"<= {mb(limit)} (first load + 1 model): {verdict} by {mb(abs(limit - mem['end']))}",
        ],
        ["peak RSS (VmHWM)", mb(mem["peak"]), ""],
    ]
    steps = [["first load", mb(mem["first"])]]
    steps += [[f"after publication {n} (good)", mb(rss)] for n, rss in mem["trajectory"]]
    text = table(["memory", "MB", "target"], rows) + "\n\n" + table(["RSS, settled", "MB"], steps)
    return text, [("RSS at the end within one model size of the first load", mem["end"] <= limit)]


def report(
    args: argparse.Namespace, info: dict, records: list[dict], load: Load, mem: dict
) -> bool:
    """Print everything; True on PASS."""
    print(f"soak — {stamp()} — {machine()}")
    print(
        f"{args.publications} publications ({info['good']} good, {info['bad']} bad) of a "
        f"{info['size'] / 1e6:.1f} MB ONNX model in {info['elapsed']:.0f} s; {args.clients} "
        f"clients; poll {args.poll_interval} s; settle timeout {args.settle_timeout} s; "
        "baton serve --trusted-key PUB --require-signature"
    )
    print(f"kept: {info['kept']} (server.log, audit.jsonl, publications.jsonl, memory.json)")
    if info["aborted"]:
        print(f"ABORTED: {info['aborted']}")
    checks: list[Check] = []
    for text, more in (
        good_section(records),
        bad_section(records),
        load_section(load),
        memory_section(mem, info["size"]),
    ):
        print()
        print(text)
        checks += more
    checks += [
        (
            f"verified copies left in the server's TMPDIR: {info['snapshots']}",
            info["snapshots"] == 0,
        ),
        (f"server exit code on SIGTERM: {info['exit']}", info["exit"] == 0),
        ("run completed", not info["aborted"]),
    ]
    print()
    for what, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {what}")
    passed = all(ok for _, ok in checks)
    print()
    print(f"overall: {'PASS' if passed else 'FAIL'}")
    return passed


# --- main --------------------------------------------------------------------------------------


def soak(args: argparse.Namespace, work: Path, kept: Path) -> tuple[dict, list[dict], Load, dict]:
    """Run everything; (facts for the report, one record per publication, the load, memory)."""
    key, pub = generate_key_pair(work / "ci")
    repo, staging, sources = work / "repo", work / "staging", work / "sources"
    for d in (repo / MODEL, staging, sources):
        d.mkdir(parents=True)
    server = start_server(repo, work, kept, pub, args.poll_interval)
    run = Run(
        server.url,
        repo,
        staging,
        sources,
        key,
        args.floats,
        args.settle_timeout,
        server.process.pid,
    )
    info = {"kept": kept, "aborted": None, "elapsed": 0.0, "snapshots": -1, "exit": None, "size": 0}
    records: list[dict] = []
    load = Load(server.url, args.clients)
    mem: dict = {"trajectory": []}
    try:
        info["size"] = (published(run, 1, repo) / ONNX).stat().st_size
        if not run.wait(lambda m: serving_default(m, 1))[1]:
            raise RuntimeError(f"version 1 not served: {entry(run.model(), 1)}")
        load.start()
        time.sleep(1)
        mem["first"] = settled_rss(run)
        started = time.monotonic()
        records = publish_all(
            run,
            load,
            args.publications,
            args.bad_every,
            kept / "publications.jsonl",
            mem["trajectory"],
        )
        info["elapsed"] = time.monotonic() - started
        load.phase = "the end"
        mem["end"] = settled_rss(run)
        mem["peak"] = memory(run.pid)["VmHWM"]
        (kept / "memory.json").write_text(json.dumps(mem | {"model_bytes": info["size"]}))
        info["snapshots"] = len(list((work / "tmp").glob(f"{SNAPSHOTS}*")))
    except Exception:
        info["aborted"] = traceback.format_exc().strip().splitlines()[-1]
        (kept / "aborted.txt").write_text(traceback.format_exc())
    finally:
        load.stop()
        info["exit"] = server.stop()
        run.http.close()
        if (repo / ".baton" / "audit.jsonl").exists():
            shutil.copy(repo / ".baton" / "audit.jsonl", kept / "audit.jsonl")
    info["good"] = sum(r["kind"] == "good" for r in records)
    info["bad"] = len(records) - info["good"]
    return info, records, load, mem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--publications", type=int, default=1000)
    parser.add_argument("--bad-every", type=int, default=10, help="one bad publication in N")
    parser.add_argument("--clients", type=int, default=3, help="closed-loop client threads")
    parser.add_argument("--floats", type=int, default=2_000_000, help="model size / 4 bytes")
    parser.add_argument("--poll-interval", type=float, default=0.1, help="server poll, seconds")
    parser.add_argument("--settle-timeout", type=float, default=30.0, help="seconds")
    args = parser.parse_args()
    kept = Path(tempfile.mkdtemp(prefix="baton-soak-"))
    with tempfile.TemporaryDirectory(prefix="baton-soak-run-") as tmp:
        info, records, load, mem = soak(args, Path(tmp), kept)
    sys.exit(0 if report(args, info, records, load, mem) else 1)


if __name__ == "__main__":
    main()
