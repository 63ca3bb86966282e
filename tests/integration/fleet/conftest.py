"""Fixtures for fleet tests: a real etcd, a real S3 stand-in, and Baton nodes in subprocesses,
all on loopback and all stopped by PID when the test ends, failed or not."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from baton.dev.cluster import Etcd, Node, S3Server


class Processes:
    """The nodes a test started; ``stop_all()`` (run at teardown) stops every one still running.

    node = processes.node("a", ["--fleet", etcd.url, "--repository", str(repo)], s3.env())
    node.wait_ready(60)
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.nodes: list[Node] = []

    def node(
        self, name: str, args: list[str], env: dict[str, str] | None = None, *, start: bool = True
    ) -> Node:
        """A node logging to ``<tmp_path>/node-<name>.log``, started unless ``start=False``."""
        node = self.add(Node(name, args, env, self.log_dir / f"node-{name}.log"))
        return node.start() if start else node

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        return node

    def stop_all(self, grace: float = 30) -> dict[str, int | None]:
        """SIGTERM every node at once (then SIGKILL after ``grace`` s); their exit codes."""
        running = [n for n in self.nodes if n.running()]
        if not running:
            return {}
        with ThreadPoolExecutor(len(running)) as pool:
            codes = pool.map(lambda n: n.stop(grace), running)
            return {n.name: code for n, code in zip(running, codes, strict=True)}


@pytest.fixture
def processes(tmp_path):
    registry = Processes(tmp_path)
    yield registry
    registry.stop_all()


# etcd and s3 depend on `processes` so that their teardown can stop the nodes first, whatever
# order a test names its fixtures in: a node shuts down while its store still answers.


@pytest.fixture
def etcd(tmp_path, processes):
    """A single-member etcd on loopback with its data in ``tmp_path/etcd``."""
    server = Etcd()
    try:
        server.start(tmp_path / "etcd")
        yield server
    finally:
        processes.stop_all()
        server.stop()


@pytest.fixture
def s3(processes):
    """moto's S3 server on loopback with an empty bucket ``models`` (its per-request log
    lines kept out of the test's output)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = S3Server().start()
    try:
        server.make_bucket("models")
        yield server
    finally:
        processes.stop_all()
        server.stop()
