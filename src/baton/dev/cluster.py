"""Real services on loopback for the fleet integration tests: etcd, an S3 stand-in, Baton nodes.

Plain helpers, no pytest. Every process is started by a test and stopped by its PID (never by
name); ports are free loopback ports chosen when an object is made and kept across restarts.

    etcd = Etcd()
    etcd.start(tmp_path / "etcd")      # waits until /health says {"health": "true"}
    etcd.stop(); time.sleep(10); etcd.restart()   # same ports, same data
    s3 = S3Server().start()
    s3.make_bucket("models")
    node = Node("a", ["--fleet", etcd.url, "--repository", "s3://models/"], s3.env(), log)
    node.start().wait_ready(60)
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from baton.dev.testing import free_port, free_ports

__all__ = ["Etcd", "Node", "S3Server", "free_port", "free_ports", "log_tail"]

HOST = "127.0.0.1"

# Processes still running when the interpreter exits (a test run cut short) are killed, so none
# outlives the run. Teardown normally stops them first; this is the backstop.
_live: dict[int, subprocess.Popen] = {}


@atexit.register
def _kill_leftovers() -> None:
    for process in list(_live.values()):
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)  # a paused process is still killed
                os.kill(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
    _live.clear()


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _terminate(process: subprocess.Popen, grace: float) -> int:
    """SIGTERM (and SIGCONT, should it be paused), wait ``grace`` seconds, then SIGKILL.
    Returns the exit code (negative for a signal)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
            os.kill(process.pid, signal.SIGCONT)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
    _live.pop(process.pid, None)
    return process.returncode


def _kill(process: subprocess.Popen) -> int:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
    _live.pop(process.pid, None)
    return process.returncode


def _spawn(command: list[str], log_path: Path, env: dict[str, str] | None) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:  # appended: a restart keeps the earlier output
        log.write(f"\n==== {time.strftime('%H:%M:%S')} {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    _live[process.pid] = process
    return process


class Etcd:
    """A single-member etcd (``/usr/bin/etcd``, 3.4) on two loopback ports.

    ``restart()`` comes back on the same ports with the same data directory, so what was written
    before a ``stop()`` is still there (leases keep counting while it is down).
    """

    def __init__(self, name: str = "baton-test") -> None:
        binary = shutil.which("etcd")
        if binary is None:
            raise RuntimeError("no etcd binary on PATH (Debian: apt-get install etcd-server)")
        self.binary = binary
        self.name = name
        self.client_port, self.peer_port = free_ports(2)
        self.data_dir: Path | None = None
        self.process: subprocess.Popen | None = None
        self.paused = False

    @property
    def url(self) -> str:
        """What ``baton serve --fleet`` takes."""
        return f"etcd://{HOST}:{self.client_port}"

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.client_port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "etcd was never started"
        return self.process.pid

    @property
    def log_path(self) -> Path:
        assert self.data_dir is not None, "etcd was never started"
        return self.data_dir / "etcd.log"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, data_dir: Path, timeout: float = 20) -> Etcd:
        """Start etcd with its data in ``data_dir/data`` and its log in ``data_dir/etcd.log``;
        return once it reports healthy (raises with the log's tail after ``timeout`` s)."""
        assert not self.running(), "etcd is already running"
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        peer = f"http://{HOST}:{self.peer_port}"
        command = [
            self.binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir / "data"),
            "--listen-client-urls", self.http_url,
            "--advertise-client-urls", self.http_url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{self.name}={peer}",
            "--initial-cluster-state", "new",
            "--enable-v2=false",
            "--heartbeat-interval", "50",   # a single member elects itself in ~0.5 s, not ~1 s
            "--election-timeout", "500",
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]  # fmt: skip
        self.process = _spawn(command, self.log_path, env=None)
        self.paused = False
        self.wait_healthy(timeout)
        return self

    def restart(self, timeout: float = 20) -> Etcd:
        """Start again (after ``stop()`` or ``kill()``) on the same ports and data directory."""
        assert self.data_dir is not None, "etcd was never started"
        if self.running():
            self.stop()
        return self.start(self.data_dir, timeout)

    def healthy(self) -> bool:
        """``/health`` says true, and the member answering is this one (its peer URL), not
        another etcd that holds the client port."""
        try:
            r = httpx.get(f"{self.http_url}/health", timeout=1)
            if r.status_code != 200 or r.json().get("health") != "true":
                return False
            r = httpx.post(f"{self.http_url}/v3/cluster/member/list", json={}, timeout=1)
            peer = f"http://{HOST}:{self.peer_port}"
            return any(peer in m.get("peerURLs", []) for m in r.json().get("members", []))
        except (httpx.HTTPError, ValueError, AttributeError):
            return False

    def wait_healthy(self, timeout: float = 20) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"etcd exited with {self.process.returncode}:\n{log_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"etcd not healthy in {timeout} s:\n{log_tail(self.log_path)}")
            time.sleep(0.05)

    def stop(self, grace: float = 5) -> int | None:
        """SIGTERM by PID, SIGKILL after ``grace`` s; returns the exit code (None if never
        started). A clean shutdown gives -15: etcd re-raises SIGTERM on itself once it has
        shut down."""
        if self.process is None:
            return None
        self.paused = False
        return _terminate(self.process, grace)

    def kill(self) -> int | None:
        """SIGKILL by PID: a crash, no clean shutdown."""
        if self.process is None:
            return None
        self.paused = False
        return _kill(self.process)

    def pause(self) -> None:
        """SIGSTOP: the process stays, its ports stay open, nothing answers (like a partition:
        clients hang until their own timeouts)."""
        assert self.running(), "etcd is not running"
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.running(), "etcd is not running"
        os.kill(self.pid, signal.SIGCONT)
        self.paused = False

    def client(self, timeout: float = 5) -> Any:
        """An ``etcd3gw`` client. Its default timeout is none at all, so a paused etcd would
        hang it forever; this one gives up after ``timeout`` seconds."""
        import etcd3gw

        return etcd3gw.client(host=HOST, port=self.client_port, timeout=timeout)


class S3Server:
    """moto's S3 stand-in, in a thread of this process, on a loopback port.

    moto keeps its state in module globals, shared by every server in the process: ``start()``
    and ``stop()`` reset it, so buckets never leak from one test into the next. Nothing is set
    in ``os.environ``; pass ``env()`` to the subprocesses that should use it.
    """

    access_key = "testing"
    secret_key = "testing"
    region = "us-east-1"

    def __init__(self) -> None:
        self.port = free_port()
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> S3Server:
        from moto.server import ThreadedMotoServer

        assert self._server is None, "already started"
        self._server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
        self._server.start()
        self.reset()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        with contextlib.suppress(httpx.HTTPError):
            self.reset()
        self._server.stop()  # shuts the werkzeug server down and closes its socket
        self._server = None

    def reset(self) -> None:
        """Forget every bucket and object (all of moto's in-process state)."""
        httpx.post(f"{self.endpoint}/moto-api/reset", timeout=10).raise_for_status()

    def env(self) -> dict[str, str]:
        """Environment for a subprocess (a Baton node) that should use this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def client(self) -> Any:
        """A boto3 S3 client for this server (its own credentials, not the environment's)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def make_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)


class Node:
    """``baton serve`` in a subprocess on its own loopback HTTP and gRPC ports (kept across
    restarts). ``args`` are the caller's flags (``--fleet``, ``--repository``, ...); ``env`` is
    laid over this process's environment."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str] | None, log_path: Path
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = dict(env or {})
        self.log_path = Path(log_path)
        self.http_port, self.grpc_port = free_ports(2)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def grpc_hostport(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"node {self.name} was never started"
        return self.process.pid

    @property
    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "baton.cli", "serve", *self.args,
            "--node-name", self.name,
            "--http-port", str(self.http_port),
            "--grpc-port", str(self.grpc_port),
            "--host", HOST,
        ]  # fmt: skip

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> Node:
        """Start the process and return at once; see ``wait_live`` and ``wait_ready``."""
        assert not self.running(), f"node {self.name} is already running"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.process = _spawn(self.command, self.log_path, env)
        return self

    def restart(self) -> Node:
        """Start again on the same ports (stopping it first if it still runs)."""
        if self.running():
            self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _wait_status(self, path: str, timeout: float) -> None:
        assert self.process is not None, f"node {self.name} was never started"
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"node {self.name} exited with {self.process.returncode} while waiting for "
                    f"{path}:\n{log_tail(self.log_path)}"
                )
            try:
                if httpx.get(self.url + path, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"node {self.name}: {path} not 200 within {timeout} s:\n"
                    f"{log_tail(self.log_path)}"
                )
            time.sleep(0.1)

    def wait_live(self, timeout: float = 30) -> None:
        self._wait_status("/v2/health/live", timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        self._wait_status("/v2/health/ready", timeout)

    def kill(self) -> int | None:
        """SIGKILL by PID: a crash."""
        return None if self.process is None else _kill(self.process)

    def stop(self, grace: float = 30) -> int | None:
        """SIGTERM by PID, SIGKILL after ``grace`` s; returns the exit code (0 for a clean
        shutdown; None if never started)."""
        return None if self.process is None else _terminate(self.process, grace)

    def pause(self) -> None:
        """SIGSTOP: a hung node (its ports open, nothing answering)."""
        assert self.running(), f"node {self.name} is not running"
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.running(), f"node {self.name} is not running"
        os.kill(self.pid, signal.SIGCONT)
