"""The fleet's deployment: deploy/kubernetes (Kubernetes manifests) and the Dockerfile.

Every manifest is validated offline against the Kubernetes JSON schemas that ship with the
``kubernetes-validate`` package, in strict mode (an unknown or misspelt field fails), for the
oldest and the newest Kubernetes version we support. Then the properties a fleet node depends on
are asserted: probes on the health endpoints, a graceful shutdown that outlasts the drain, a
non-root read-only container, Services and a PodDisruptionBudget that select the Baton pods, and a
``baton serve`` configuration (flags, env, ConfigMap, downward API) that joins the fleet; that
configuration is also parsed by the real ``serve`` flags and ``ServerSettings``.

The image itself is built only where a container engine runs (``docker info`` succeeds).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from baton.cli import serve as serve_cli
from baton.settings import ServerSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"
KUSTOMIZATION = "kustomization.yaml"

# The oldest Kubernetes we support, and the newest whose schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())

# `baton serve` drains in-flight requests for up to BATON_SHUTDOWN_TIMEOUT after SIGTERM.
DEFAULT_DRAIN_SECONDS = 30.0

# What the downward API would give the pod, for building its settings here.
DOWNWARD = {
    "metadata.name": "baton-5d8f7c9b6d-x2x9z",
    "metadata.namespace": "baton",
    "spec.nodeName": "node-a",
    "status.podIP": "10.0.0.7",
    "metadata.labels['topology.kubernetes.io/zone']": "zone-a",
}


def _downward(field_path: str) -> str:
    return DOWNWARD.get(field_path, "downward-value")


# --- loading --------------------------------------------------------------------------------


def _load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.glob("*.y*ml") if p.name != KUSTOMIZATION)


def _manifests() -> list[tuple[str, dict]]:
    """(file name, document) for every Kubernetes object in deploy/kubernetes."""
    return [(path.name, doc) for path in _manifest_files() for doc in _load(path)]


def _objects(kind: str, file: str | None = None) -> list[dict]:
    return [doc for name, doc in _manifests() if doc["kind"] == kind and file in (None, name)]


def _one(kind: str, file: str | None = None) -> dict:
    found = _objects(kind, file)
    where = file or "deploy/kubernetes"
    assert len(found) == 1, f"expected one {kind} in {where}, found {len(found)}"
    return found[0]


def _deployment() -> dict:
    return _one("Deployment", "deployment.yaml")


def _pod_spec() -> dict:
    return _deployment()["spec"]["template"]["spec"]


def _pod_labels() -> dict:
    return _deployment()["spec"]["template"]["metadata"]["labels"]


def _container() -> dict:
    containers = _pod_spec()["containers"]
    named = [c for c in containers if c["name"] == "baton"]
    assert len(named) == 1, "the Deployment needs exactly one container named 'baton'"
    return named[0]


def _config_maps() -> dict[str, dict]:
    return {cm["metadata"]["name"]: cm.get("data", {}) for cm in _objects("ConfigMap")}


def _selects(selector: dict, labels: dict) -> bool:
    """Does a label selector (plain map, or matchLabels without matchExpressions) match?"""
    assert "matchExpressions" not in selector, "use matchLabels: the tests read only those"
    match = selector.get("matchLabels", selector)
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


# --- where a setting comes from -------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where a container gets a value: ``kind`` is literal, fieldRef, configMap or secret."""

    kind: str
    value: str | None
    origin: str


_REF = re.compile(r"\$\((\w+)\)")


def _env_source(container: dict, name: str) -> Source | None:
    """The value of env var ``name`` in the container, as Kubernetes resolves it (``env`` over
    ``envFrom``; among ``envFrom`` sources the last wins)."""
    for entry in reversed(container.get("env", [])):
        if entry["name"] != name:
            continue
        if "value" in entry:
            return Source("literal", _expand(container, str(entry["value"])), f"env {name}")
        ref = entry["valueFrom"]
        if "fieldRef" in ref:
            return Source("fieldRef", ref["fieldRef"]["fieldPath"], f"env {name}")
        if "configMapKeyRef" in ref:
            key = ref["configMapKeyRef"]
            value = _config_maps().get(key["name"], {}).get(key["key"])
            return Source("configMap", value, f"ConfigMap {key['name']} key {key['key']}")
        if "secretKeyRef" in ref:
            return Source("secret", None, f"Secret {ref['secretKeyRef']['name']}")
        raise AssertionError(f"env {name}: unexpected valueFrom {ref}")
    for entry in reversed(container.get("envFrom", [])):
        if "configMapRef" in entry:
            cm = entry["configMapRef"]["name"]
            key = name.removeprefix(entry.get("prefix", ""))
            if name.startswith(entry.get("prefix", "")) and key in _config_maps().get(cm, {}):
                value = str(_config_maps()[cm][key])
                return Source("configMap", value, f"ConfigMap {cm} key {key} (envFrom)")
    return None


def _expand(container: dict, text: str) -> str:
    """``$(VAR)`` references as the kubelet expands them (literal and ConfigMap values only)."""

    def value(match: re.Match) -> str:
        source = _env_source(container, match.group(1))
        if source is None:
            return match.group(0)
        if source.kind == "fieldRef":
            return _downward(source.value)
        return source.value or ""

    return _REF.sub(value, text)


def _flag(args: list[str], flag: str) -> str | None:
    """The value of ``--flag VALUE`` or ``--flag=VALUE`` (the last one given)."""
    found = None
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            found = args[i + 1]
        elif arg.startswith(flag + "="):
            found = arg.split("=", 1)[1]
    return found


def _setting(field: str) -> Source | None:
    """Where ``baton serve`` in the container gets ServerSettings field ``field``: its flag
    (which wins), else ``BATON_<FIELD>`` in the environment."""
    container = _container()
    flag = "--" + field.replace("_", "-")
    value = _flag([str(a) for a in container.get("args", [])], flag)
    if value is not None:
        ref = _REF.fullmatch(value)
        if ref:  # --node-name $(POD_NAME): the variable's source
            return _env_source(container, ref.group(1))
        return Source("literal", _expand(container, value), f"flag {flag}")
    return _env_source(container, f"BATON_{field.upper()}")


def _pod_env() -> dict[str, str]:
    """The container's environment with the downward API filled in (Secrets left out)."""
    container = _container()
    names = {e["name"] for e in container.get("env", [])}
    for entry in container.get("envFrom", []):
        if "configMapRef" in entry:
            prefix = entry.get("prefix", "")
            names |= {prefix + k for k in _config_maps().get(entry["configMapRef"]["name"], {})}
    env = {}
    for name in names:
        source = _env_source(container, name)
        if source is None or source.kind == "secret":
            continue
        env[name] = _downward(source.value) if source.kind == "fieldRef" else str(source.value)
    return env


@pytest.fixture
def settings(monkeypatch) -> ServerSettings:
    """The pod's ServerSettings, parsed by the real `serve` flags and BATON_* environment."""
    for name in list(os.environ):
        if name.startswith("BATON_"):
            monkeypatch.delenv(name)
    for name, value in _pod_env().items():
        monkeypatch.setenv(name, value)
    container = _container()
    assert container.get("command") in (None, ["baton"]), "the image's entrypoint is baton"
    argv = [_expand(container, str(a)) for a in container.get("args", [])]
    assert argv[:1] == ["serve"], f"the container must run `baton serve`, not {argv[:1]}"
    parser = argparse.ArgumentParser(prog="baton")
    serve_cli.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    fields = ServerSettings.model_fields
    overrides = {k: v for k, v in vars(args).items() if k in fields and v not in (None, False)}
    return ServerSettings(**overrides)


def _mount_for(path: str) -> tuple[dict, dict] | None:
    """The volume mount (and its volume) that holds ``path`` in the container."""
    target = PurePosixPath(path)
    holding = [
        mount
        for mount in _container().get("volumeMounts", [])
        if PurePosixPath(mount["mountPath"]) in (target, *target.parents)
    ]
    if not holding:
        return None
    best = max(holding, key=lambda mount: len(PurePosixPath(mount["mountPath"]).parts))
    volumes = {v["name"]: v for v in _pod_spec().get("volumes", [])}
    return best, volumes[best["name"]]


def _container_port(target: int | str) -> int | None:
    """A Service's targetPort (number or name) as the container's port number."""
    if isinstance(target, int):
        return target
    for port in _container().get("ports", []):
        if port.get("name") == target:
            return port["containerPort"]
    return None


# --- schemas --------------------------------------------------------------------------------


def test_the_manifests_exist():
    names = {p.name for p in _manifest_files()}
    for required in ("configmap.yaml", "deployment.yaml", "services.yaml", "pdb.yaml", "etcd.yaml"):
        assert required in names, f"deploy/kubernetes/{required} is missing"
    assert (DEPLOY / KUSTOMIZATION).is_file(), "deploy/kubernetes/kustomization.yaml is missing"
    assert (DEPLOY / "README.md").is_file(), "deploy/kubernetes/README.md is missing"


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: p.name)
def test_manifest_matches_the_kubernetes_schema(path, version):
    documents = _load(path)
    assert documents, f"{path.name} holds no document"
    problems = []
    for doc in documents:
        what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
            problems.append(f"{what} at {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{what}: {exc.message}")
    assert not problems, f"{path.name} is not valid for Kubernetes {version}: {problems}"


def test_strict_validation_rejects_a_misspelt_field():
    """The schema check can fail: a typo such as `replica: 3` is an error, not ignored."""
    labels = {"app": "x"}
    pod = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "x", "image": "x"}]}}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": 3, "selector": {"matchLabels": labels}, "template": pod},
    }
    kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest():
    (kustomization,) = _load(DEPLOY / KUSTOMIZATION)
    assert kustomization["apiVersion"].startswith("kustomize.config.k8s.io/")
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization.get("resources", [])
    assert len(resources) == len(set(resources)), f"a resource is listed twice: {resources}"
    files = {p.name for p in _manifest_files()}
    assert set(resources) == files, (
        f"kustomization.yaml resources {sorted(resources)} must be exactly the manifests "
        f"{sorted(files)}"
    )


def test_kustomize_build_is_valid():
    """What `kubectl apply -k` would send, where kubectl is installed (it renders offline)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    built = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60, check=False
    )
    assert built.returncode == 0, f"kubectl kustomize failed: {built.stderr[-2000:]}"
    objects = [doc for doc in yaml.safe_load_all(built.stdout) if doc is not None]
    assert len(objects) == len(_manifests()), "kustomize renders every manifest once"
    namespace = _load(DEPLOY / KUSTOMIZATION)[0]["namespace"]
    for doc in objects:
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, f"{doc['kind']} namespace"


def test_no_secret_is_committed():
    secrets = [name for name, doc in _manifests() if doc["kind"] == "Secret"]
    assert not secrets, f"Secrets belong in the cluster, not in git: {secrets}"


# --- the Deployment -------------------------------------------------------------------------


def test_deployment_selects_its_own_pods():
    spec = _deployment()["spec"]
    assert _selects(spec["selector"], _pod_labels()), "the selector must match the pod labels"
    assert spec.get("replicas", 1) >= 2, "a fleet needs more than one node"


def test_readiness_probe_is_the_ready_endpoint():
    probe = _container().get("readinessProbe", {})
    get = probe.get("httpGet")
    assert get is not None, "the readinessProbe must be an httpGet"
    assert get.get("path") == "/v2/health/ready", "readiness must probe /v2/health/ready"
    assert _container_port(get.get("port")) == 8000, "readiness must probe the HTTP port 8000"


def test_liveness_probe_is_the_live_endpoint():
    get = _container().get("livenessProbe", {}).get("httpGet")
    assert get is not None, "the livenessProbe must be an httpGet"
    assert get.get("path") == "/v2/health/live", "liveness must probe /v2/health/live"
    assert _container_port(get.get("port")) == 8000, "liveness must probe the HTTP port 8000"
    startup = _container().get("startupProbe", {}).get("httpGet")
    if startup is not None:
        assert startup.get("path") == "/v2/health/live", "a startupProbe must not wait for ready"


def _pre_stop_seconds() -> float:
    pre_stop = _container().get("lifecycle", {}).get("preStop")
    assert pre_stop, "the container needs a lifecycle.preStop hook (time to leave the endpoints)"
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = " ".join(pre_stop.get("exec", {}).get("command", []))
    match = re.search(r"\bsleep\s+(\d+(?:\.\d+)?)", command)
    assert match, f"the preStop hook should sleep a few seconds, not run {command!r}"
    return float(match.group(1))


def test_grace_period_outlasts_pre_stop_and_drain(settings):
    grace = _pod_spec().get("terminationGracePeriodSeconds", 30)
    assert grace > DEFAULT_DRAIN_SECONDS, (
        f"terminationGracePeriodSeconds {grace} must exceed the 30 s drain of in-flight requests"
    )
    needed = _pre_stop_seconds() + settings.shutdown_timeout
    assert grace > needed, (
        f"terminationGracePeriodSeconds {grace} must exceed preStop + BATON_SHUTDOWN_TIMEOUT "
        f"({needed:g} s), or the kubelet kills requests mid-drain"
    )


def test_container_runs_as_non_root_on_a_read_only_filesystem():
    pod = _pod_spec().get("securityContext", {})
    own = _container().get("securityContext", {})
    effective = {**pod, **own}  # the container's own settings win
    assert effective.get("runAsNonRoot") is True, "securityContext.runAsNonRoot must be true"
    assert effective.get("runAsUser", 1) != 0, "runAsUser must not be 0"
    assert own.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation must be false"
    assert own.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem must be true"
    assert "ALL" in own.get("capabilities", {}).get("drop", []), "drop all capabilities"


def test_writable_paths_are_empty_dirs(settings):
    writable = {"/tmp": "/tmp", "the cache dir (S3 versions, state)": str(settings.local_cache)}
    state_home = _pod_env().get("XDG_STATE_HOME")
    if state_home:
        writable["XDG_STATE_HOME (compile-cache key)"] = state_home
    for what, path in writable.items():
        found = _mount_for(path)
        assert found is not None, f"{what} ({path}) is on the read-only root filesystem"
        mount, volume = found
        assert "emptyDir" in volume, f"{what} ({path}) must be an emptyDir, not {volume}"
        assert not mount.get("readOnly"), f"{what} ({path}) is mounted read-only"


def test_tokens_come_from_a_secret(settings):
    assert settings.tokens is not None, "--tokens is required: control needs tokens off loopback"
    path = PurePosixPath(settings.tokens)
    assert str(path) == "/etc/baton/tokens", f"the token file should be /etc/baton/tokens: {path}"
    found = _mount_for(str(path))
    assert found is not None, f"nothing is mounted at {path.parent}"
    mount, volume = found
    assert "secret" in volume, f"the token file must come from a Secret, not {volume}"
    assert mount.get("readOnly") is True, "mount the token Secret read-only"
    relative = str(path.relative_to(mount["mountPath"]))
    items = volume["secret"].get("items")
    if items:
        paths = [item["path"] for item in items]
        assert relative in paths, f"the Secret's items must include {relative}: {paths}"
    secret = volume["secret"]["secretName"]
    assert not volume["secret"].get("optional"), f"Secret {secret} must not be optional"


def test_container_configures_a_fleet_node(settings):
    # Node name: the pod's own name.
    node = _setting("node_name")
    assert node is not None and (node.kind, node.value) == ("fieldRef", "metadata.name"), (
        f"--node-name / BATON_NODE_NAME must be the pod name (downward API metadata.name): {node}"
    )
    # Zone: per pod from the downward API, or from the ConfigMap.
    zone = _setting("zone")
    assert zone is not None and zone.kind in ("fieldRef", "configMap"), (
        f"--zone / BATON_ZONE must come from the downward API or the ConfigMap: {zone}"
    )
    # Repository: S3, from the ConfigMap.
    repository = _setting("repository")
    assert repository is not None and repository.kind == "configMap", (
        f"--repository / BATON_REPOSITORY must come from the ConfigMap: {repository}"
    )
    assert settings.remote and str(settings.repository).startswith("s3://"), (
        f"the repository must be s3://BUCKET/PREFIX: {settings.repository}"
    )
    # Fleet: etcd, by name.
    assert _setting("fleet") is not None, "--fleet / BATON_FLEET must be set"
    assert _setting("fleet_name") is not None, "--fleet-name / BATON_FLEET_NAME must be set"
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", settings.fleet_name)
    assert settings.node_name == DOWNWARD["metadata.name"]
    # Listening beyond loopback, on the ports the Services and probes use.
    assert settings.host == "0.0.0.0", f"--host must be 0.0.0.0, not {settings.host}"
    assert (settings.http_port, settings.grpc_port) == (8000, 8001)
    ports = {p["containerPort"] for p in _container().get("ports", [])}
    assert {8000, 8001} <= ports, f"the container must declare ports 8000 and 8001: {ports}"
    assert not settings.insecure_admin, "--insecure-admin opens control to anyone: use tokens"


def test_fleet_points_at_the_etcd_service(settings):
    url = urlsplit(settings.fleet or "")
    assert url.scheme == "etcd", f"BATON_FLEET must be etcd://HOST:PORT[,...]: {settings.fleet}"
    service = _one("StatefulSet", "etcd.yaml")["spec"]["serviceName"]
    for endpoint in url.netloc.split(","):
        host, _, port = endpoint.rpartition(":")
        labels = host.split(".")
        assert service in labels[:2], (
            f"etcd endpoint {endpoint} must be the Service {service} or one of its pods "
            f"({service}-N.{service})"
        )
        assert port == "2379", f"etcd endpoint {endpoint} must use the client port 2379"


# --- Services, PDB, etcd --------------------------------------------------------------------


def test_services_select_the_pods_and_expose_http_and_grpc():
    services = _objects("Service", "services.yaml")
    assert len(services) >= 2, "services.yaml needs the Services for HTTP 8000 and gRPC 8001"
    etcd_labels = _one("StatefulSet", "etcd.yaml")["spec"]["template"]["metadata"]["labels"]
    for service in services:
        name, spec = service["metadata"]["name"], service["spec"]
        assert _selects(spec.get("selector", {}), _pod_labels()), (
            f"Service {name} must select the Deployment's pods"
        )
        assert not _selects(spec["selector"], etcd_labels), f"Service {name} selects etcd pods"
        exposed = {
            p["port"]: _container_port(p.get("targetPort", p["port"])) for p in spec["ports"]
        }
        for port in (8000, 8001):
            assert exposed.get(port) == port, (
                f"Service {name} must expose {port} (to the container's {port}): {exposed}"
            )


def test_pdb_selects_the_pods_and_allows_a_drain():
    pdb = _one("PodDisruptionBudget", "pdb.yaml")["spec"]
    assert _selects(pdb["selector"], _pod_labels()), "the PDB must select the Deployment's pods"
    replicas = _deployment()["spec"].get("replicas", 1)
    if "minAvailable" in pdb:
        assert isinstance(pdb["minAvailable"], str) or pdb["minAvailable"] < replicas, (
            "minAvailable equal to the replicas blocks every node drain"
        )
    else:
        assert pdb.get("maxUnavailable") not in (None, 0, "0%"), "maxUnavailable must be > 0"


def test_etcd_is_a_three_member_statefulset():
    sts = _one("StatefulSet", "etcd.yaml")
    spec = sts["spec"]
    assert spec["replicas"] == 3, "etcd needs 3 members (quorum survives one failure)"
    (container,) = spec["template"]["spec"]["containers"]
    assert container["image"] == "quay.io/coreos/etcd:v3.5.17"
    service = next(
        s for s in _objects("Service", "etcd.yaml") if s["metadata"]["name"] == spec["serviceName"]
    )
    assert service["spec"].get("clusterIP") == "None", "the etcd Service must be headless"
    assert service["spec"].get("publishNotReadyAddresses") is True, (
        "etcd peers must resolve each other before any is ready"
    )
    assert _selects(service["spec"]["selector"], spec["template"]["metadata"]["labels"])
    args = [str(a) for a in container.get("command", []) + container.get("args", [])]
    cluster = _flag(args, "--initial-cluster") or ""
    members = dict(m.split("=", 1) for m in cluster.split(",") if m)
    name, svc = sts["metadata"]["name"], spec["serviceName"]
    expected = {f"{name}-{i}": f"http://{name}-{i}.{svc}" for i in range(3)}
    assert {m: u.rsplit(":", 1)[0] for m, u in members.items()} == expected, (
        f"--initial-cluster must name every pod by its DNS name: {cluster}"
    )
    assert _flag(args, "--name") == "$(POD_NAME)", "each member is named after its pod"


# --- README ---------------------------------------------------------------------------------


def test_readme_explains_install_and_secrets():
    text = (DEPLOY / "README.md").read_text()
    for needed in (
        "kubectl apply -k deploy/kubernetes",
        "baton token new",
        "baton-tokens",
        "envFrom",
        "baton fleet status",
        "BATON_FLEET",
    ):
        assert needed in text, f"deploy/kubernetes/README.md should mention {needed!r}"


# --- the image ------------------------------------------------------------------------------


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    assert starts, "the Dockerfile has no FROM"
    return instructions[starts[-1] :]


def test_dockerfile_builds_a_slim_non_root_image():
    assert DOCKERFILE.is_file(), "Dockerfile is missing at the repository root"
    text = DOCKERFILE.read_text()
    instructions = _instructions(text)
    assert "python:3.11-slim" in text, "the image is based on python:3.11-slim"
    final = _final_stage(instructions)
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage needs a USER line (a non-root numeric uid)"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER must be a non-zero numeric uid, not {uid}"
    run_as = _pod_spec().get("securityContext", {}).get("runAsUser")
    assert run_as in (None, int(uid)), f"the pod's runAsUser {run_as} is not the image's {uid}"
    installs = [rest for word, rest in instructions if word == "RUN" and "pip install" in rest]
    assert installs, "the Dockerfile installs baton with pip"
    install = next((r for r in installs if "[fleet]" in r), "")
    assert "-c constraints.txt" in install, "install with -c constraints.txt (the known pins)"
    assert "--no-cache-dir" in install, "pip install --no-cache-dir keeps the image slim"
    extras = re.search(r"\.\[([^\]]*)\]", install)
    assert extras and extras.group(1).split(",") == ["fleet"], (
        f"install '.[fleet]' only (no test or framework extras): {install}"
    )
    assert not re.search(r"build-essential|\bgcc\b", " ".join(r for _, r in final)), (
        "no build tools in the final stage"
    )
    entrypoint = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert entrypoint and yaml.safe_load(entrypoint[-1]) == ["baton"], 'ENTRYPOINT ["baton"]'
    cmd = [rest for word, rest in final if word == "CMD"]
    assert cmd and yaml.safe_load(cmd[-1])[0] == "serve", 'CMD ["serve", ...]'
    exposed = {p.split("/")[0] for word, rest in final if word == "EXPOSE" for p in rest.split()}
    assert {"8000", "8001"} <= exposed, f"EXPOSE 8000 8001, not {exposed}"
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert "**" in ignore or {".venv", ".git"} <= set(ignore), (
        ".dockerignore must keep .venv and .git out of the build context"
    )


def _container_engine() -> str | None:
    for name in ("docker", "podman"):
        exe = shutil.which(name)
        if exe is None:
            continue
        try:
            info = subprocess.run([exe, "info"], capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if info.returncode == 0:
            return exe
    return None


@pytest.mark.timeout(1800)
def test_image_builds_and_runs_baton():
    engine = _container_engine()
    if engine is None:
        pytest.skip("no container engine on this machine")
    tag = f"baton-test:{uuid.uuid4().hex[:12]}"
    build = subprocess.run(
        [engine, "build", "-t", tag, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert build.returncode == 0, (
        f"{engine} build failed:\n{build.stdout[-4000:]}{build.stderr[-4000:]}"
    )
    try:
        run = subprocess.run(
            [engine, "run", "--rm", tag, "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, f"`baton --help` failed in the image: {run.stderr[-2000:]}"
        assert "serve" in run.stdout, run.stdout
        who = subprocess.run(
            [engine, "run", "--rm", "--entrypoint", "id", tag, "-u"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert who.stdout.strip() not in ("", "0"), f"the image runs as uid {who.stdout.strip()}"
    finally:
        subprocess.run([engine, "rmi", "-f", tag], capture_output=True, timeout=120, check=False)
