"""A small fleet for tests: model ``m`` (y = x + version) in moto's S3, nodes on one etcd.

repo = FleetRepo(s3, tmp_path)           # m/model.yaml, versions 1 and 2 published
node = start_node(processes, etcd, repo, "a", zone="z1")
state = wait_for(lambda: fleet(etcd).verdict.status == "converged", 60)
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import onnx

from baton.artifacts.manifest import read_manifest, write_manifest
from baton.artifacts.publish import publish, publish_to_s3
from baton.artifacts.s3 import S3Location, upload_version
from baton.dev.cluster import Etcd, Node, S3Server
from baton.dev.demo import affine_model
from baton.fleet.operations import FleetState, fleet_state
from baton.fleet.store import FleetStore

FLEET = "t"
BUCKET_URL = "s3://models/repo"
# A node's own canary (--canary-steps) judges errors only: version n answers x + n, so its
# outputs do shift, and p99 on a shared 2-core machine running three nodes is noise.
MODEL_YAML = (b"version_policy: {latest: 1}\ndrain_timeout: 5s\n"
              b"rollout: {gates: {max_p99_ratio: null, max_mean_shift: null,"
              b" max_class_drift: null, min_requests: 20}}\n")  # fmt: skip


class FleetRepo:
    """Model ``m`` in the S3 stand-in; ``publish(n)`` adds version n (y = x + n)."""

    def __init__(self, s3: S3Server, tmp: Path, versions: tuple[int, ...] = (1, 2)) -> None:
        self.s3, self.tmp = s3, tmp
        self.client = s3.client()
        self.client.put_object(Bucket="models", Key="repo/m/model.yaml", Body=MODEL_YAML)
        for version in versions:
            self.publish(version)

    def publish(self, version: int, model: onnx.ModelProto | None = None) -> str:
        path = self.tmp / f"m-{version}.onnx"
        onnx.save(model if model is not None else affine_model(float(version)), str(path))
        return publish_to_s3(path, BUCKET_URL, "m", version=version, client=self.client)

    def publish_broken(self, version: int) -> None:
        """A version whose files match its manifest but whose model cannot load (published
        as a good one, then its model.onnx replaced and the manifest rewritten to match)."""
        local = self.tmp / f"broken-{version}"
        path = self.tmp / f"m-{version}.onnx"
        onnx.save(affine_model(float(version)), str(path))
        (local / "m").mkdir(parents=True)
        (local / "m" / "model.yaml").write_bytes(MODEL_YAML)
        directory = publish(path, local, "m", version=version)
        garbage = b"this is not an ONNX model"
        (directory / "model.onnx").write_bytes(garbage)
        manifest = read_manifest(directory)
        manifest.body["files"]["model.onnx"] = {
            "size": len(garbage), "sha256": hashlib.sha256(garbage).hexdigest()
        }  # fmt: skip
        write_manifest(directory, manifest)
        upload_version(self.client, S3Location.parse(BUCKET_URL), "m", version, directory)


def node_args(etcd: Etcd, s3: S3Server, tmp: Path, name: str, zone: str) -> list[str]:
    return [
        "--repository", BUCKET_URL, "--s3-endpoint", s3.endpoint, "--s3-interval", "1s",
        "--cache-dir", str(tmp / f"cache-{name}"), "--fleet", etcd.url, "--fleet-name", FLEET,
        "--zone", zone, "--lease-ttl", "3",
    ]  # fmt: skip


def start_node(processes, etcd: Etcd, repo: FleetRepo, name: str, zone: str) -> Node:
    return processes.node(name, node_args(etcd, repo.s3, repo.tmp, name, zone), repo.s3.env())


def fleet(etcd: Etcd) -> FleetState:
    return fleet_state(FleetStore.connect(etcd.url, FLEET))


def baton_fleet(etcd: Etcd, *args: str) -> subprocess.CompletedProcess:
    """``baton fleet ARGS`` as an operator runs it (stdout and stderr captured)."""
    return subprocess.run(
        [sys.executable, "-m", "baton.cli", "fleet", "--fleet", etcd.url, "--fleet-name", FLEET,
         *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def serves(state: FleetState, node: str, version: int) -> bool:
    """``node`` is live and serves ``version`` of m as its default."""
    m = state.reports.get(node, {}).get("models", {}).get("m", {})
    return m.get("default") == version


def digests(state: FleetState, version: int) -> set[str | None]:
    """The digest each live node serves ``version`` of m with."""
    return {r["models"]["m"]["serving"].get(str(version)) for r in state.reports.values()}
