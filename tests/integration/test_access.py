"""Who may do what, on a real server: the token matrix over HTTP and gRPC, control refused
beyond loopback without tokens, and TLS (and mutual TLS) with tritonclient."""

from __future__ import annotations

import ssl

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from baton.api.auth import AccessPolicy
from baton.api.grpc import start_grpc_server
from baton.dev.testing import audit_entries, free_port
from baton.server import BatonServer
from baton.settings import ServerSettings

from .certs import make_pki
from .conftest import ZEROS, baton_cli, one_line_error

INFER = {"inputs": [ZEROS]}


@pytest.fixture
def tokens(tmp_path):
    """A token file with one token per scope, made with `baton token new`."""
    path = tmp_path / "tokens.yaml"
    made = {}
    for name, scope in (("ops", "operate"), ("reader", "read"), ("app", "infer")):
        out = baton_cli("token", "new", name, "--scope", scope, "--tokens", str(path))
        assert out.returncode == 0, out.stderr
        made[name] = out.stdout.strip()
    assert path.stat().st_mode & 0o777 == 0o600
    return path, made


def bearer(token: str | None) -> dict:
    return {"authorization": f"Bearer {token}"} if token else {}


HTTP_CASES = [  # (method, path, body, token → expected status)
    ("POST", "/admin/models/m/pin", {"version": 1},
     {None: 401, "wrong": 401, "app": 403, "reader": 403, "ops": 200}),
    ("POST", "/v2/repository/models/m/load", {},
     {None: 401, "wrong": 401, "reader": 403, "ops": 200}),
    ("GET", "/admin/models", None,
     {None: 401, "wrong": 401, "app": 403, "reader": 200, "ops": 200}),
    ("POST", "/v2/repository/index", {}, {None: 401, "app": 403, "reader": 200}),
    ("GET", "/metrics", None, {None: 401, "app": 403, "reader": 200}),
    ("POST", "/v2/models/m/infer", INFER, {None: 401, "wrong": 401, "reader": 403, "app": 200}),
    ("GET", "/v2/models/m", None, {None: 401, "app": 200}),
    ("GET", "/v2/health/ready", None, {None: 200}),
]  # fmt: skip


def test_the_token_matrix_over_http_grpc_and_the_cli(server_factory, repo, tokens):
    path, made = tokens
    made["wrong"] = "not-a-token"
    server = server_factory(repo, args=("--tokens", str(path), "--protect-inference"))
    for method, route, body, expected in HTTP_CASES:
        for who, status in expected.items():
            r = httpx.request(method, server.url + route, json=body,
                              headers=bearer(made.get(who)), timeout=30)  # fmt: skip
            assert r.status_code == status, (method, route, who, r.status_code, r.text)
            if status == 401:
                assert r.headers["www-authenticate"].startswith("Bearer")
            if status >= 400:
                assert r.json()["error"]

    grpc_url = server.grpc_hostport
    client = tgrpc.InferenceServerClient(grpc_url)
    x = tgrpc.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.zeros((1, 4), np.float32))
    calls = {
        "infer": lambda h: client.infer("m", [x], headers=h),
        "read": lambda h: client.get_model_repository_index(headers=h),
        "operate": lambda h: client.load_model("m", headers=h),
    }
    right = {"infer": "app", "read": "reader", "operate": "ops"}
    for scope, call in calls.items():
        assert call(bearer(made[right[scope]])) is not None or scope == "operate"
        other = "reader" if scope != "read" else "app"
        for who, code in ((None, "UNAUTHENTICATED"), ("wrong", "UNAUTHENTICATED"),
                          (other, "PERMISSION_DENIED")):  # fmt: skip
            with pytest.raises(InferenceServerException) as failed:
                call(bearer(made.get(who)))
            assert code in str(failed.value.status()), (scope, who, failed.value)
    assert client.is_server_live()  # health needs no token

    out = baton_cli("pin", "m", "2", "--url", server.url, "--token", made["ops"])
    assert out.returncode == 0, out.stderr
    as_reader = {"BATON_TOKEN": made["reader"]}
    line = one_line_error(baton_cli("pin", "m", "1", "--url", server.url, env=as_reader))
    assert "403" in line and "lacks the 'operate' scope" in line
    control = [e for e in audit_entries(server.url, bearer(made["reader"]))
               if e["kind"] == "control"]  # fmt: skip
    assert control and {e["data"]["token"] for e in control} == {"ops"}
    assert any(e["data"].get("path") == "/admin/models/m/pin" for e in control)


async def test_beyond_loopback_control_needs_tokens(repo):
    """A server bound to 0.0.0.0 without tokens refuses every control request (in-process: the
    app and the gRPC interceptor see the non-loopback host; nothing listens beyond loopback)."""
    server = BatonServer(ServerSettings(repository=repo, host="0.0.0.0", grpc_port=0))
    transport = httpx.ASGITransport(app=server.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://baton") as http:
        pin = await http.post("/admin/models/m/pin", json={"version": 1})
        assert pin.status_code == 403 and "--tokens" in pin.json()["error"]
        assert (await http.get("/admin/models")).status_code == 403
        infer = await http.post("/v2/models/m/infer", json=INFER)
        assert infer.status_code != 403  # inference stays open (no model loaded here: 404)
    server.audit.close()
    server.executor.shutdown()

    opened = BatonServer(ServerSettings(repository=repo, host="0.0.0.0", grpc_port=0,
                                        insecure_admin=True))  # fmt: skip
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=opened.app),
                                 base_url="http://baton") as http:  # fmt: skip
        assert (await http.get("/admin/models")).status_code == 200
    opened.audit.close()
    opened.executor.shutdown()

    from baton.api.grpc.auth import AuthInterceptor

    port = free_port()
    policy = AccessPolicy(None, "0.0.0.0")
    grpc_server = await start_grpc_server(
        server.context, "127.0.0.1", port, interceptors=[AuthInterceptor(policy, server.events)]
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            load = channel.unary_unary(
                "/inference.GRPCInferenceService/RepositoryModelLoad",
                request_serializer=lambda b: b, response_deserializer=lambda b: b,
            )  # fmt: skip
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await load(b"")
            assert failed.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "--tokens" in failed.value.details()
    finally:
        await grpc_server.stop(None)


def test_https_and_grpc_over_tls_with_tritonclient(server_factory, repo, tmp_path):
    pki = make_pki(tmp_path / "pki")
    tls = ("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key))
    server = server_factory(repo, args=tls, ca_cert=pki.ca)
    assert server.url.startswith("https://")
    context = lambda: ssl.create_default_context(cafile=str(pki.ca))  # noqa: E731
    http = thttp.InferenceServerClient(server.hostport, ssl=True, ssl_context_factory=context)
    x = thttp.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.zeros((1, 4), np.float32))
    assert http.infer("m", [x]).as_numpy("y").tolist() == [[2.0] * 4]
    g = tgrpc.InferenceServerClient(server.grpc_hostport, ssl=True,
                                    root_certificates=str(pki.ca))  # fmt: skip
    gx = tgrpc.InferInput("x", [1, 4], "FP32")
    gx.set_data_from_numpy(np.zeros((1, 4), np.float32))
    assert g.infer("m", [gx]).as_numpy("y").tolist() == [[2.0] * 4]
    with pytest.raises(httpx.TransportError):  # plain HTTP to a TLS port is not served
        httpx.get(server.url.replace("https", "http") + "/v2/health/ready", timeout=5)
    out = baton_cli("models", "--url", server.url, "--ca-cert", str(pki.ca))
    assert out.returncode == 0 and "SERVING" in out.stdout
    assert "CERTIFICATE_VERIFY_FAILED" in one_line_error(baton_cli("models", "--url", server.url))


def test_mutual_tls_requires_a_client_certificate(server_factory, repo, tmp_path):
    pki = make_pki(tmp_path / "pki")
    args = ("--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
            "--tls-client-ca", str(pki.ca))  # fmt: skip
    server = server_factory(repo, args=args, ca_cert=pki.ca, wait_ready=False)
    with_cert = ssl.create_default_context(cafile=str(pki.ca))
    with_cert.load_cert_chain(str(pki.client_cert), str(pki.client_key))

    def ready():
        try:
            url = f"{server.url}/v2/health/ready"
            return httpx.get(url, verify=with_cert, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    from .conftest import wait_for

    wait_for(ready, timeout=60)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/v2/health/ready", verify=server.verify, timeout=5)
    g = tgrpc.InferenceServerClient(
        server.grpc_hostport, ssl=True, root_certificates=str(pki.ca),
        private_key=str(pki.client_key), certificate_chain=str(pki.client_cert),
    )  # fmt: skip
    assert g.is_server_ready()
    anonymous = tgrpc.InferenceServerClient(server.grpc_hostport, ssl=True,
                                            root_certificates=str(pki.ca))  # fmt: skip
    with pytest.raises(InferenceServerException):
        anonymous.is_server_ready()
