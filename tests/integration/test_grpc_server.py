"""The gRPC server: a call in flight on its worker threads finishes after SIGTERM, a swap waits
for it, and the port is shared only when asked (worker processes)."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc

from baton.api.grpc import start_grpc_server
from baton.api.sockets import bind_socket
from baton.dev.demo import slow_model, write_version
from baton.dev.testing import free_port
from baton.server import BatonServer
from baton.settings import ServerSettings

from .conftest import wait_for

HELD = 'baton_inflight_requests{model="slow",version="1"} 1.0'


def slow_call(server, results: dict) -> threading.Thread:
    def call() -> None:
        client = tgrpc.InferenceServerClient(server.grpc_hostport)
        n = tgrpc.InferInput("n", [1], "INT64")
        n.set_data_from_numpy(np.array([15000], np.int64))
        try:
            results["answer"] = client.infer("slow", [n], client_timeout=60)
        except Exception as exc:
            results["error"] = exc
        finally:
            client.close()

    thread = threading.Thread(target=call)
    thread.start()
    wait_for(lambda: HELD in httpx.get(f"{server.url}/metrics").text, interval=0.01)
    return thread


def test_sigterm_lets_a_grpc_call_in_flight_finish(server_factory, tmp_path):
    write_version(tmp_path / "repo" / "slow", 1, slow_model())
    server = server_factory(tmp_path / "repo")
    results: dict = {}
    started = time.perf_counter()
    thread = slow_call(server, results)
    assert server.stop() == 0
    thread.join(30)
    assert "error" not in results, results
    assert abs(float(results["answer"].as_numpy("y")) - 1.0) < 1e-3
    assert time.perf_counter() - started < 30
    assert "baton stopped" in server.output()


def test_a_swap_waits_for_a_grpc_call_in_flight(server_factory, tmp_path):
    write_version(tmp_path / "repo" / "slow", 1, slow_model())
    server = server_factory(tmp_path / "repo")
    results: dict = {}
    thread = slow_call(server, results)
    write_version(tmp_path / "repo" / "slow", 2, slow_model())
    thread.join(60)
    finished = time.time()
    assert results["answer"].get_response().model_version == "1"

    def when(state: str) -> float | None:
        events = httpx.get(f"{server.url}/admin/events", params={"model": "slow"}).json()
        return next((e["time"] for e in events if e["version"] == 1 and e["state"] == state), None)

    unloaded = wait_for(lambda: when("UNLOADED"), what="version 1 unloaded")
    assert when("DRAINING") < finished  # the swap came while the call was in flight
    assert unloaded >= finished - 0.05  # and version 1 stayed until the call had its answer
    assert "unloaded anyway" not in server.output()


async def test_the_port_is_shared_only_with_reuse_port(tmp_path):
    server = BatonServer(ServerSettings(repository=tmp_path, grpc_port=0,
                                        audit_log=tmp_path / "audit.jsonl"))  # fmt: skip
    port = free_port()
    first = await start_grpc_server(server.context, "127.0.0.1", port, reuse_port=True)
    second = await start_grpc_server(server.context, "127.0.0.1", port, reuse_port=True)
    try:
        with pytest.raises(RuntimeError):
            await start_grpc_server(server.context, "127.0.0.1", port)
    finally:
        await first.stop(None)
        await second.stop(None)
        server.audit.close()
        server.executor.shutdown()


async def test_grpc_cannot_take_the_port_http_has_bound(tmp_path):
    """The HTTP socket listens as soon as it is bound, so gRPC (started next) cannot bind the
    same port and split its connections."""
    server = BatonServer(ServerSettings(repository=tmp_path, grpc_port=0,
                                        audit_log=tmp_path / "audit.jsonl"))  # fmt: skip
    sock = bind_socket("127.0.0.1", 0)
    try:
        with pytest.raises(RuntimeError):
            await start_grpc_server(server.context, "127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()
        server.audit.close()
        server.executor.shutdown()
