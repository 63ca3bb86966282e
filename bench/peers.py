"""Baton against its peers, side by side in one run on one machine: Seldon MLServer, KServe's
Python model server, Ray Serve and TorchServe, each in its own virtual environment
(bench/.venv-<peer>, created and pip-installed here on first use, pinned), all wrapping the same
ONNX model with onnxruntime (one intra-op thread), each with one worker / replica.

    python bench/peers.py [--peers mlserver,kserve,ray,torchserve] [--duration 10]
        [--concurrency 1,16,64] [--rounds 1] [--phase 30] [--swap-every 3]
        [--swap-concurrency 16] [--baton-workers 1] [--baton-src SRC] [--ray-max-ongoing 256]
        [--model-mb 0]
        [--skip-throughput] [--skip-swaps] [--install-only] [--json bench/results/peers.json]

Every server is started first and runs for the whole run. Then:

1. Throughput: the closed loop of bench/throughput_client.py (which also reads the server's CPU
   seconds over its whole process tree) at each concurrency,
   over HTTP (v2 JSON) for every server and over v2 gRPC where the server has it. The cells take
   turns across servers (and rounds), so that what else this shared machine does meanwhile
   falls on all of them alike; the tables show the median over rounds.
2. Swap under load: bench/loadgen.py at one concurrency, a steady phase, then a phase in which
   the model is updated to a new version every few seconds by each server's own documented
   mechanism; version v computes y = x + v, so every answer is checked against the version that
   says it computed it. Failed = non-200, no answer, or a wrong answer.

A peer that cannot be installed or started is reported in one line and skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import onnx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.dev.demo import affine_model, write_version
from baton.dev.testing import ServerProcess, free_port, free_ports
from bench.common import (
    MLSERVER_PINS,
    MLSERVER_VENV,
    ROOT,
    machine,
    mlserver_model_dir,
    percentiles,
    stamp,
    start_mlserver,
    table,
)
from bench.throughput_client import V2_METHOD, cpu_since, tree_cpu

MODEL = "m"
WIDTH = 16
BENCH = ROOT / "bench"
ADAPTERS = BENCH / "peers"
TS_OIP_GRPC = "/org.pytorch.serve.grpc.openinference.GRPCInferenceService/ModelInfer"

PINS: dict[str, list[str]] = {
    "mlserver": MLSERVER_PINS,
    "kserve": ["kserve==0.21.0", "onnxruntime==1.31.1"],
    "ray": ["ray[serve]==2.60.0", "onnxruntime==1.31.1"],
    # TorchServe's Python worker imports torch and yaml whatever the handler (otf_message_handler,
    # ts.utils.util); torch 2.13.0 is the CPU wheel this machine has on disk.
    "torchserve": [
        "torchserve==0.12.0",
        "torch-model-archiver==0.12.0",
        "onnxruntime==1.31.1",
        "torch==2.13.0",
        "pyyaml==6.0.4",
    ],
}
PACKAGE = {"mlserver": "mlserver", "kserve": "kserve", "ray": "ray", "torchserve": "torchserve"}

# What each server runs with here, and what it would run with by default.
CONFIG = {
    "baton": "`baton serve`, 1 process; ONNX Runtime backend; repository polled every 0.25 s",
    "mlserver": "parallel_workers 1 (= default): HTTP/gRPC in the main process, inference in 1 "
    "worker process; runtime bench/mlserver_onnx.py",
    "kserve": "ModelServer workers 1 (= default), REST + gRPC in one process, async predict on "
    "the event loop; per-request trace log silenced",
    "ray": "1 replica (num_cpus 1), max_ongoing_requests {max_ongoing} (default 5), worker "
    "niceness 0 (default 15); Serve's HTTP proxy, controller, raylet, GCS; access log off",
    "torchserve": "1 Python worker (default: 1 per core = 2), batch size 1 (= default), Java "
    "frontend; OIP gRPC on; log4j at WARN",
}


PADDING_FLOATS = 0  # --model-mb: an unused-but-not-foldable initializer of this many floats


def model(version: int) -> onnx.ModelProto:
    return affine_model(float(version), width=WIDTH, padding_floats=PADDING_FLOATS)


def save(version: int, path: Path) -> Path:
    """The model of ``version`` at ``path``, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save(model(version), str(tmp))
    os.replace(tmp, path)
    return path


def one_line(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    line = lines[-1] if lines else str(text)
    return line if len(line) <= limit else line[: limit - 3] + "..."


class PeerUnavailable(Exception):
    """A peer that cannot be installed or started here; the message says exactly why."""


# ---------------------------------------------------------------- installing


def venv_of(peer: str) -> Path:
    return MLSERVER_VENV if peer == "mlserver" else BENCH / f".venv-{peer}"


def ensure_venv(peer: str, pins: list[str] | None = None) -> Path:
    """bench/.venv-<peer> with ``pins`` (default PINS[peer]), created on first use (a marker
    records the pins)."""
    venv = venv_of(peer)
    marker = venv / ".baton-bench-pins"
    pins = pins or PINS[peer]
    wanted = " ".join(pins)
    if marker.exists() and marker.read_text() == wanted:
        return venv
    print(f"installing {wanted} into {venv.relative_to(ROOT)} ...", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    steps = {
        "python -m venv": [base, "-m", "venv", str(venv)],
        "pip install --upgrade pip": [*pip, "--upgrade", "pip"],
        f"pip install {wanted}": [*pip, *pins],
    }
    for what, step in steps.items():
        done = subprocess.run(step, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise PeerUnavailable(f"`{what}` failed: {one_line(done.stderr)}")
    marker.write_text(wanted)
    return venv


def installed(venv: Path, package: str) -> str:
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         f"import importlib.metadata as m; print(m.version({package!r}))"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.stdout.strip() or "?"


# ---------------------------------------------------------------- servers


@dataclass
class Served:
    """A running server: where to reach it, its root process, how to update and stop it."""

    name: str
    pid: int
    url: str  # HTTP base URL; the model is at {url}/v2/models/m
    update: Callable[[int], None]  # the server's own way to move to a new version; blocks
    stop: Callable[[], object]
    grpc: str | None = None  # host:port of a v2 gRPC service, if it has one
    grpc_method: str = V2_METHOD
    grpc_typed: bool = False  # fp32_contents instead of raw_input_contents
    prepare: Callable[[range], object] | None = None  # builds update artifacts ahead of time


def stop_tree(process: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM the process, then whatever of its descendants outlives it (SIGKILL at last)."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        children = []
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    alive = [c for c in children if c.is_running()]
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(alive, timeout=grace)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


def wait_until(check: Callable[[], bool], process: subprocess.Popen, log: Path, what: str,
               timeout: float = 180) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PeerUnavailable(
                f"{what} exited with {process.returncode} while starting: "
                f"{one_line(log.read_text(errors='replace'))} (log: {log})"
            )
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    stop_tree(process)
    raise PeerUnavailable(f"{what} not ready in {timeout:.0f} s (log: {log})")


def infer_ok(url: str) -> bool:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, WIDTH], "data": [0] * WIDTH}]}
    return httpx.post(f"{url}/v2/models/{MODEL}/infer", json=body, timeout=5).status_code == 200


def start_baton_peer(work: Path, args) -> Served:
    repo = work / "baton-repo"
    write_version(repo / MODEL, 1, model(1))
    extra = ("--workers", str(args.baton_workers)) if args.baton_workers > 1 else ()
    env = {"PYTHONPATH": str(args.baton_src)} if args.baton_src else None
    try:
        proc = ServerProcess.start(
            repo, work / "baton.log", poll_interval=0.25, log_level="warning", timeout=120,
            args=extra, env=env,
        )  # fmt: skip
    except RuntimeError as e:
        raise PeerUnavailable(f"baton did not start: {one_line(str(e))}") from e
    return Served(
        "baton", proc.process.pid, proc.url,
        update=lambda v: write_version(repo / MODEL, v, model(v)),
        stop=proc.stop, grpc=proc.grpc_hostport,
    )  # fmt: skip


def start_mlserver_peer(work: Path, args) -> Served:
    ensure_venv("mlserver")
    repo = work / "mlserver-repo"
    mlserver_model_dir(repo, MODEL, 1, model(1).SerializeToString())
    try:
        proc = start_mlserver(repo, work, MODEL)
    except RuntimeError as e:
        raise PeerUnavailable(f"mlserver did not start: {one_line(str(e))}") from e

    def update(version: int) -> None:
        # its way to reload a model in place: new files, then the repository API's load
        mlserver_model_dir(repo, MODEL, version, model(version).SerializeToString())
        r = httpx.post(f"{proc.url}/v2/repository/models/{MODEL}/load", timeout=120)
        r.raise_for_status()

    return Served("mlserver", proc.process.pid, proc.url, update, proc.stop, grpc=proc.grpc)


def start_kserve_peer(work: Path, args) -> Served:
    venv = ensure_venv("kserve")
    repo = work / "kserve-repo"
    write_version(repo / MODEL, 1, model(1))
    port, grpc_port = free_ports(2)
    log = work / "kserve.log"
    process = subprocess.Popen(
        [str(venv / "bin" / "python"), str(ADAPTERS / "kserve_server.py"), str(repo), MODEL,
         str(port), str(grpc_port)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=work,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: httpx.get(f"{url}/v2/models/{MODEL}/ready", timeout=1).status_code == 200,
        process, log, "kserve",
    )  # fmt: skip

    def update(version: int) -> None:
        # files delivered into the model directory (as KServe's model agent does), then the
        # model repository extension's load, which builds the new model and swaps it in
        write_version(repo / MODEL, version, model(version))
        r = httpx.post(f"{url}/v2/repository/models/{MODEL}/load", timeout=120)
        r.raise_for_status()

    return Served(
        "kserve", process.pid, url, update, lambda: stop_tree(process),
        grpc=f"127.0.0.1:{grpc_port}",
    )  # fmt: skip


def start_ray_peer(work: Path, args) -> Served:
    venv = ensure_venv("ray")
    models = work / "ray-models"
    port = free_port()
    log = work / "ray.log"
    command = [
        str(venv / "bin" / "python"), str(ADAPTERS / "ray_server.py"), "--http-port", str(port),
        "--model", str(save(1, models / "v1.onnx")),
    ]  # fmt: skip
    if args.ray_max_ongoing:
        command += ["--max-ongoing", str(args.ray_max_ongoing)]
    # Ray starts its workers (Serve's proxy and replicas among them) at niceness 15, so that on a
    # machine shared with the load generator and anything else they are the first to starve;
    # niceness 0 as every other server here has (Ray's job supervisor sets the same variable).
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_worker_niceness": "0"}
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
        cwd=work, env=env,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line.strip())

    threading.Thread(target=read, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: "ready" in list(lines.queue) and infer_ok(url), process, log, "ray serve")
    with contextlib.suppress(queue.Empty):
        while True:
            lines.get_nowait()

    def update(version: int) -> None:
        # redeploy with a new user_config: Serve calls reconfigure() on the running replica
        path = save(version, models / f"v{version}.onnx")
        process.stdin.write(f"{version} {path}\n")
        process.stdin.flush()
        answer = lines.get(timeout=180)
        if answer != f"updated {version}":
            raise RuntimeError(f"ray driver answered {answer!r}")

    def stop() -> None:
        with contextlib.suppress(OSError):
            process.stdin.close()  # the driver shuts Serve and Ray down
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(30)
        stop_tree(process)

    return Served("ray", process.pid, url, update, stop)


TS_LOG4J = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="%d %-5p %c - %m%n"/>
    </Console>
  </Appenders>
  <Loggers><Root level="warn"><AppenderRef ref="STDOUT"/></Root></Loggers>
</Configuration>
"""


def torchserve_archive(venv: Path, work: Path, version: int) -> str:
    """A .mar of ``version`` in the model store (torch-model-archiver); returns its file name."""
    store = work / "ts-store"
    name = f"{MODEL}_v{version}.mar"
    if (store / name).exists():
        return name
    scratch = work / f"ts-build-{version}"
    scratch.mkdir(parents=True, exist_ok=True)
    onnx_file = save(version, scratch / "model.onnx")
    subprocess.run(
        [str(venv / "bin" / "torch-model-archiver"), "--model-name", MODEL,
         "--version", str(version), "--serialized-file", str(onnx_file),
         "--handler", str(ADAPTERS / "torchserve_handler.py"), "--export-path", str(scratch),
         "--force"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    store.mkdir(exist_ok=True)
    os.replace(scratch / f"{MODEL}.mar", store / name)
    shutil.rmtree(scratch)
    return name


def start_torchserve_peer(work: Path, args) -> Served:
    if not shutil.which("java"):
        raise PeerUnavailable("TorchServe's frontend needs Java 11 or newer: no `java` on PATH")
    venv = ensure_venv("torchserve")
    first = torchserve_archive(venv, work, 1)
    port, management, metrics, grpc_port, grpc_management = free_ports(5)
    (work / "ts-log4j2.xml").write_text(TS_LOG4J)
    config = work / "ts-config.properties"
    config.write_text(
        "\n".join(
            [
                f"inference_address=http://127.0.0.1:{port}",
                f"management_address=http://127.0.0.1:{management}",
                f"metrics_address=http://127.0.0.1:{metrics}",
                "grpc_inference_address=127.0.0.1",
                "grpc_management_address=127.0.0.1",
                f"grpc_inference_port={grpc_port}",
                f"grpc_management_port={grpc_management}",
                "default_workers_per_model=1",
                "disable_token_authorization=true",
                "enable_model_api=true",  # the management API may register models
                "ts_open_inference_protocol=true",  # KServe v2 (OIP) gRPC beside its own
                f"vmargs=-Dlog4j.configurationFile=file://{work / 'ts-log4j2.xml'}",
                "",
            ]
        )
    )
    tmp = work / "ts-tmp"  # its pid file lives in the temp dir: keep it apart from others'
    tmp.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
        "TMPDIR": str(tmp),
        "LOG_LOCATION": str(work / "ts-logs"),
        "METRICS_LOCATION": str(work / "ts-logs"),
    }
    log = work / "torchserve.log"
    process = subprocess.Popen(
        [str(venv / "bin" / "torchserve"), "--start", "--foreground", "--ncs",
         "--model-store", str(work / "ts-store"), "--ts-config", str(config),
         "--models", f"{MODEL}={first}"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work,
        env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: infer_ok(url), process, log, "torchserve")
    admin = f"http://127.0.0.1:{management}"
    current = {"version": 1}

    def update(version: int) -> None:
        # the management API: register the new version, make it the default, unregister the old
        name = torchserve_archive(venv, work, version)
        r = httpx.post(
            f"{admin}/models",
            params={"url": name, "initial_workers": 1, "synchronous": "true"},
            timeout=180,
        )
        r.raise_for_status()
        httpx.put(f"{admin}/models/{MODEL}/{version}/set-default", timeout=60).raise_for_status()
        old, current["version"] = current["version"], version
        httpx.delete(f"{admin}/models/{MODEL}/{old}", timeout=60).raise_for_status()

    return Served(
        "torchserve", process.pid, url, update, lambda: stop_tree(process),
        grpc=f"127.0.0.1:{grpc_port}", grpc_method=TS_OIP_GRPC, grpc_typed=True,
        prepare=lambda versions: [torchserve_archive(venv, work, v) for v in versions],
    )  # fmt: skip


STARTERS: dict[str, Callable[[Path, argparse.Namespace], Served]] = {
    "baton": start_baton_peer,
    "mlserver": start_mlserver_peer,
    "kserve": start_kserve_peer,
    "ray": start_ray_peer,
    "torchserve": start_torchserve_peer,
}


# ---------------------------------------------------------------- measuring


def throughput(served: Served, protocol: str, concurrency: int, duration: float) -> dict:
    target = served.url if protocol == "http" else served.grpc
    command = [
        sys.executable, str(BENCH / "throughput_client.py"), "--target", target,
        "--protocol", protocol, "--server-pid", str(served.pid), "--model", MODEL,
        "--width", str(WIDTH), "--concurrency", str(concurrency), "--duration", str(duration),
    ]  # fmt: skip
    if protocol == "grpc":
        command += ["--grpc-method", served.grpc_method]
        if served.grpc_typed:
            command.append("--grpc-typed")
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 120)
    if done.returncode != 0:
        raise RuntimeError(f"load client failed: {one_line(done.stderr)}")
    result = json.loads(done.stdout)
    result["rps"] = result["requests"] / result["seconds"]
    result["cpu_us"] = result["server_cpu"] / max(result["requests"], 1) * 1e6
    return result


def swaps(served: Served, args, work: Path) -> dict:
    """Steady phase, then a phase with an update every ``swap_every`` seconds (each update waits
    for the one before it to return), under bench/loadgen.py at ``swap_concurrency``."""
    out = work / f"{served.name}-swaps.npy"
    count = int(args.phase // args.swap_every)
    if served.prepare:  # artifacts built before the clock starts (TorchServe's .mar files)
        served.prepare(range(2, count + 3))
    load = subprocess.Popen(
        [sys.executable, str(BENCH / "loadgen.py"), "--url", f"{served.url}/v2/models/{MODEL}",
         "--duration", str(2 * args.phase + 1), "--concurrency", str(args.swap_concurrency),
         "--width", str(WIDTH), "--out", str(out)],
    )  # fmt: skip
    t0 = time.time()
    time.sleep(1 + args.phase)  # 1 s for the load generator to start, then the steady phase
    swap_start = time.time()
    updates: list[tuple[float, float, int, str | None]] = []
    version = 2
    while time.time() < swap_start + args.phase - args.swap_every:
        t_call = time.time()
        error = None
        try:
            served.update(version)
        except Exception as e:  # a failed update is a result, not the end of the run
            error = f"{type(e).__name__}: {one_line(str(e), 120)}"
        updates.append((t_call, time.time(), version, error))
        version += 1
        time.sleep(max(0.0, t_call + args.swap_every - time.time()))
    load.wait(timeout=2 * args.phase + 120)
    rows = np.load(out)
    start, latency, ok, ver, correct = rows.T
    answered = start + latency
    result: dict = {"name": served.name}
    phases = {
        "steady": (start >= t0 + 1) & (start < swap_start),
        "swaps": (start >= swap_start) & (start < swap_start + args.phase),
    }
    for phase, mask in phases.items():
        span = start[mask].max() - start[mask].min() if mask.sum() > 1 else float("nan")
        p50, p99 = percentiles(latency[mask & (ok == 1)])
        result[phase] = {
            "rps": mask.sum() / span,
            "p50": p50,
            "p99": p99,
            "failed": int((mask & ((ok == 0) | (correct == 0))).sum()),
            "non_200": int((mask & (ok == 0)).sum()),
            "wrong": int((mask & (ok == 1) & (correct == 0)).sum()),
            "requests": int(mask.sum()),
        }
    switch, calls, stragglers = [], [], 0
    for t_call, t_return, v, error in updates:
        calls.append(t_return - t_call)
        new = answered[(ver == v) & (start >= t_call)]
        if error is None and new.size:
            first = new.min()
            switch.append(first - t_call)
            stragglers += int(((ver < v) & (ver >= 0) & (start > first)).sum())
    result["updates"] = len(updates)
    result["update_errors"] = [u[3] for u in updates if u[3]]
    result["seen"] = len(switch)
    result["call_median_s"] = float(np.median(calls)) if calls else float("nan")
    result["switch_median_s"] = float(np.median(switch)) if switch else float("nan")
    result["switch_max_s"] = float(np.max(switch)) if switch else float("nan")
    result["stragglers"] = stragglers
    return result


# ---------------------------------------------------------------- reporting


def report(args, versions: dict, skipped: dict, tput: dict, swap: list, idle: dict) -> None:
    levels = [int(c) for c in args.concurrency.split(",")]
    print()
    print(f"peers — {stamp()} — {machine()}")
    print(
        f"model y = x + v on FP32[1, {WIDTH}]"
        + (f" padded to {args.model_mb:g} MB" if args.model_mb else "")
        + "; onnxruntime with 1 intra-op thread everywhere; "
        f"throughput {args.duration:.0f} s per cell after 1 s warm-up, closed loop, cells taking "
        f"turns across servers, median of {args.rounds} round(s); swaps: "
        f"concurrency {args.swap_concurrency}, {args.phase:.0f} s steady then {args.phase:.0f} s "
        f"with an update every {args.swap_every:.0f} s"
    )
    print()
    rows = [[name, versions[name], idle.get(name, float("nan")), CONFIG[name]] for name in versions]
    rows += [[name, "-", "-", f"not run: {why}"] for name, why in skipped.items()]
    print(table(["server", "version", "idle CPU %", "configuration"], rows))
    if tput:
        print()
        rows = [
            [f"{name} {protocol}", c, r["rps"], r["p50"], r["p99"], r["errors"], r["cpu_us"]]
            for (name, protocol, c), r in tput.items()
        ]
        headers = ["target", "concurrency", "req/s", "p50 ms", "p99 ms", "errors",
                   "server CPU µs/req"]  # fmt: skip
        print(table(headers, rows))
        print()
        rows = []
        for name in [n for n in versions if n != "baton"]:
            for protocol in ("http", "grpc"):
                for c in levels:
                    a, b = tput.get(("baton", protocol, c)), tput.get((name, protocol, c))
                    if a and b:
                        rows.append(
                            [f"{name} {protocol}", c, a["rps"] / b["rps"], a["p99"] / b["p99"],
                             "yes" if a["rps"] > b["rps"] and a["p99"] < b["p99"] else "NO"]
                        )  # fmt: skip
        if rows:
            headers = ["Baton vs", "concurrency", "req/s Baton÷peer", "p99 Baton÷peer",
                       "Baton ahead on both"]  # fmt: skip
            print(table(headers, rows))
    if swap:
        print()
        rows = []
        for r in swap:
            for phase in ("steady", "swaps"):
                p = r[phase]
                rows.append(
                    [r["name"], phase, p["rps"], p["p50"], p["p99"], p["failed"], p["non_200"],
                     p["wrong"], p["requests"]]
                )  # fmt: skip
        headers = ["server", "phase", "req/s", "p50 ms", "p99 ms", "failed", "non-200/none",
                   "wrong answer", "requests"]  # fmt: skip
        print(table(headers, rows))
        print()
        rows = []
        for r in swap:
            s, w = r["steady"], r["swaps"]
            rows.append(
                [r["name"], w["failed"], w["rps"] / s["rps"], w["p99"] / s["p99"],
                 f"{r['seen']}/{r['updates']}", r["call_median_s"], r["switch_median_s"],
                 r["switch_max_s"], r["stragglers"], len(r["update_errors"])]
            )  # fmt: skip
        headers = ["server", "failed in swaps", "req/s swaps÷steady", "p99 swaps÷steady",
                   "updates seen", "update call median s", "update→traffic median s", "max s",
                   "old-version stragglers", "update errors"]  # fmt: skip
        print(table(headers, rows))
        for r in swap:
            for error in sorted(set(r["update_errors"])):
                print(f"  {r['name']} update error: {error}")
    if skipped:
        print()
        for name, why in skipped.items():
            print(f"{name}: not run: {why}")


def idle_cpu(servers: list[Served], seconds: float = 5) -> dict[str, float]:
    """Each server's CPU use while nobody sends it anything, in % of one core."""
    before = {sv.name: tree_cpu(sv.pid) for sv in servers}
    time.sleep(seconds)
    idle = {}
    for sv in servers:
        idle[sv.name] = 100 * cpu_since(sv.pid, before[sv.name]) / seconds
    return idle


def median_cells(cells: dict[tuple[str, str, int], list[dict]]) -> dict:
    """Across rounds: the median of each measure, errors added up."""
    merged = {}
    for key, results in cells.items():
        merged[key] = {
            m: float(np.median([r[m] for r in results])) for m in ("rps", "p50", "p99", "cpu_us")
        }
        merged[key]["errors"] = sum(r["errors"] for r in results)
        merged[key]["rounds"] = len(results)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", default="mlserver,kserve,ray,torchserve")
    parser.add_argument("--duration", type=float, default=10, help="seconds per throughput cell")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--rounds", type=int, default=1,
                        help="throughput cells repeated; the tables show medians")  # fmt: skip
    parser.add_argument("--phase", type=float, default=30, help="seconds per swap phase")
    parser.add_argument("--swap-every", type=float, default=3)
    parser.add_argument("--swap-concurrency", type=int, default=16)
    parser.add_argument("--baton-workers", type=int, default=1,
                        help="passed to `baton serve --workers` when above 1")  # fmt: skip
    parser.add_argument("--baton-src", type=Path,
                        help="serve Baton from this src/ (a git archive of a commit)")  # fmt: skip
    parser.add_argument("--ray-max-ongoing", type=int, default=256,
                        help="Ray Serve's max_ongoing_requests (0: its default, 5)")  # fmt: skip
    parser.add_argument("--model-mb", type=float, default=0,
                        help="pad every version's model to about this size")  # fmt: skip
    parser.add_argument("--no-baton", action="store_true", help="peers only")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-swaps", action="store_true")
    parser.add_argument("--install-only", action="store_true")
    parser.add_argument("--json", type=Path, default=BENCH / "results" / "peers.json")
    args = parser.parse_args()
    if args.baton_workers > 1:
        CONFIG["baton"] = CONFIG["baton"].replace("1 process", f"--workers {args.baton_workers}")
    if args.baton_src:
        CONFIG["baton"] += f"; code from {args.baton_src}"
    CONFIG["ray"] = CONFIG["ray"].format(max_ongoing=args.ray_max_ongoing or 5)
    global PADDING_FLOATS
    PADDING_FLOATS = int(args.model_mb * 2**20 / 4)
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in peers if p not in PINS]
    if unknown:
        parser.error(f"unknown peers {unknown}; known: {', '.join(PINS)}")
    names = peers if args.no_baton else ["baton", *peers]
    levels = [int(c) for c in args.concurrency.split(",")]

    versions: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for name in names:
        try:
            if name == "baton":
                versions[name] = f"{importlib.metadata.version('baton')} (onnxruntime "
                versions[name] += f"{importlib.metadata.version('onnxruntime')})"
            else:
                venv = ensure_venv(name)
                versions[name] = (
                    f"{installed(venv, PACKAGE[name])} (onnxruntime "
                    f"{installed(venv, 'onnxruntime')})"
                )
        except (PeerUnavailable, subprocess.SubprocessError, OSError) as e:
            skipped[name] = f"install failed: {e}"
            print(f"{name}: not run: {skipped[name]}", flush=True)
    if args.install_only:
        report(args, versions, skipped, {}, [], {})
        return

    cells: dict[tuple[str, str, int], list[dict]] = {}
    swap: list[dict] = []
    servers: list[Served] = []
    with tempfile.TemporaryDirectory(prefix="baton-peers-") as tmp:
        try:
            # Every server runs for the whole run, so that the throughput cells can take turns:
            # whatever else this shared machine does in the meantime falls on all of them alike.
            for name in [n for n in names if n in versions]:
                work = Path(tmp) / name
                work.mkdir()
                print(f"starting {name} ...", flush=True)
                try:
                    servers.append(STARTERS[name](work, args))
                except (PeerUnavailable, subprocess.SubprocessError, OSError, RuntimeError) as e:
                    skipped[name] = f"start failed: {e}"
                    versions.pop(name)
                    print(f"{name}: not run: {skipped[name]}", flush=True)
            idle = idle_cpu(servers)
            if not args.skip_throughput:
                for round_ in range(args.rounds):
                    order = servers[round_ % len(servers) :] + servers[: round_ % len(servers)]
                    for c in levels:
                        for protocol in ("http", "grpc"):
                            for served in order:
                                if protocol == "grpc" and not served.grpc:
                                    continue
                                print(f"round {round_ + 1}: {served.name} {protocol} at "
                                      f"concurrency {c} ...", flush=True)  # fmt: skip
                                try:
                                    result = throughput(served, protocol, c, args.duration)
                                except (RuntimeError, subprocess.SubprocessError) as e:
                                    print(f"{served.name} {protocol} c={c}: {e}", flush=True)
                                    continue
                                cells.setdefault((served.name, protocol, c), []).append(result)
            if not args.skip_swaps:
                for served in servers:
                    print(f"{served.name} swaps under load ...", flush=True)
                    swap.append(swaps(served, args, Path(tmp) / served.name))
        finally:
            for served in servers:
                served.stop()
                print(f"{served.name} stopped", flush=True)

    tput = median_cells(cells)
    report(args, versions, skipped, tput, swap, idle)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "stamp": stamp(),
                "machine": machine(),
                "args": {k: str(v) for k, v in vars(args).items()},
                "versions": versions,
                "skipped": skipped,
                "config": {n: CONFIG[n] for n in versions},
                "idle_cpu_percent": idle,
                "throughput": [
                    {
                        "server": n,
                        "protocol": p,
                        "concurrency": c,
                        "median": tput[(n, p, c)],
                        "rounds": r,
                    }
                    for (n, p, c), r in cells.items()
                ],
                "swaps": swap,
            },
            indent=1,
            default=str,
        )
    )
    print(f"\nresults: {args.json}")


if __name__ == "__main__":
    main()
