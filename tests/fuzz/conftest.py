"""Fixtures of the fuzz tests: one real ``baton serve`` per test module (loopback ports, a
repository in a temp dir, 1 MiB body limit), the probes that send cases to it, and good traffic
around every test. At the end of a module the server must still run and exit 0 on SIGTERM."""

from __future__ import annotations

import pytest

from tests.fuzz.strategies import (
    GoodTraffic,
    GrpcProbe,
    HttpProbe,
    scale,
    server_gone,
    start_fuzz_server,
    stop_server,
    write_fuzz_repository,
)

#: pytest-timeout for one fuzz test, grown with $BATON_FUZZ_SCALE.
TIMEOUT = round(300 * max(1.0, scale()))


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    """A server shared by the tests of one module; stopped with SIGTERM, it must exit 0."""
    root = tmp_path_factory.mktemp("fuzz")
    server = start_fuzz_server(write_fuzz_repository(root / "repo"), root / "server.log")
    yield server
    gone = server_gone(server)
    assert gone is None, gone
    problem = stop_server(server)
    assert problem is None, problem


@pytest.fixture(scope="module")
def http(fuzz_server):
    probe = HttpProbe(fuzz_server)
    yield probe
    probe.close()


@pytest.fixture(scope="module")
def grpc_probe(fuzz_server):
    probe = GrpcProbe(fuzz_server)
    yield probe
    probe.close()


@pytest.fixture(autouse=True)
def good_traffic(fuzz_server, request):
    """Valid requests in the background for the whole test (all its examples; over the
    protocols the module's ``GOOD_TRAFFIC`` names, HTTP by default): afterwards none may have
    failed or been answered wrongly, and the server must still be running."""
    protocols = getattr(request.module, "GOOD_TRAFFIC", ("http",))
    with GoodTraffic(fuzz_server, protocols) as traffic:
        yield traffic
    problems = traffic.verdict()
    gone = server_gone(fuzz_server)
    if gone:
        problems.append(gone)
    assert not problems, "\n".join(problems)


def assert_clean(problems: list[str]) -> None:
    """Fail with every problem a probe reported (the request and the server log included)."""
    assert not problems, "\n".join(problems)
