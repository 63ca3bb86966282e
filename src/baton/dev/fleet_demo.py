"""``make run-fleet``: etcd, an S3 stand-in and three Baton nodes on loopback, with the demo model.

Prints the nodes' URLs and the ``baton fleet`` commands to try, then waits for Ctrl-C and stops
everything it started (by PID). Needs Debian's ``etcd-server`` and the ``fleet`` and ``test``
extras (moto), which ``make run-fleet`` installs.

    python -m baton.dev.fleet_demo [--nodes 3]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shlex
import signal
import sys
import tempfile
import threading
from pathlib import Path

import onnx

from baton.artifacts.manifest import MANIFEST
from baton.artifacts.publish import publish_to_s3
from baton.dev.cluster import Etcd, Node, S3Server
from baton.dev.demo import affine_model
from baton.fleet.operations import FleetError, set_target
from baton.fleet.store import FleetStore

__all__ = ["main"]

FLEET = "demo"
REPOSITORY = "s3://models/demo-repository"
MODEL_YAML = b"# the demo model: y = x + version\nversion_policy: {latest: 1}\ndrain_timeout: 10s\n"


def _publish_demo(s3: S3Server, work: Path) -> str:
    """Versions 1 and 2 of the demo model into S3; the digest of version 1."""
    client = s3.client()
    client.put_object(Bucket="models", Key="demo-repository/demo/model.yaml", Body=MODEL_YAML)
    for version in (1, 2):
        path = work / f"demo-{version}.onnx"
        onnx.save(affine_model(float(version)), str(path))
        publish_to_s3(path, REPOSITORY, "demo", version=version, client=client)
    manifest = client.get_object(Bucket="models", Key=f"demo-repository/demo/1/{MANIFEST}")
    return hashlib.sha256(manifest["Body"].read()).hexdigest()


def _instructions(etcd: Etcd, s3: S3Server, nodes: list[Node], work: Path) -> str:
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in s3.env().items())
    body = '{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}'
    rows = "\n".join(
        f"  {n.name:<8} {n.url:<24} gRPC {n.grpc_hostport:<18} log {n.log_path}" for n in nodes
    )
    return f"""
Baton fleet '{FLEET}' is up: {len(nodes)} nodes serving demo version 1 (y = x + 1).
  etcd       {etcd.url}
  S3         {s3.endpoint}  (bucket 'models', repository {REPOSITORY})
{rows}

Try, in another terminal:
  export BATON_FLEET={etcd.url} BATON_FLEET_NAME={FLEET}
  .venv/bin/baton fleet status
  .venv/bin/baton fleet rollout start demo --to 2 --waves 1,50%,100% --wave-interval 10s
  .venv/bin/baton fleet rollout status demo        # then: pause | resume | promote | abort
  .venv/bin/baton fleet audit
  curl -s {nodes[0].url}/v2/models/demo/infer -d '{body}'

Publish version 3 to the stand-in S3 (nodes see it within 5 s; the fleet keeps its target):
  {env} \\
    .venv/bin/baton publish MODEL.onnx --repository {REPOSITORY} --model demo

Ctrl-C stops everything (files under {work}).
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="baton-fleet-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=3, choices=range(1, 10), metavar="N")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="baton-fleet-demo-"))
    etcd, s3, nodes = Etcd("baton-demo"), S3Server(), []
    stop = threading.Event()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        etcd.start(work / "etcd")
        s3.start().make_bucket("models")
        digest = _publish_demo(s3, work)
        store = FleetStore.connect(etcd.url, FLEET)  # version 1 is the target before nodes start
        set_target(store, "demo", 1, by="make run-fleet", digest=digest)
        for i in range(1, args.nodes + 1):
            flags = [
                "--repository", REPOSITORY, "--s3-endpoint", s3.endpoint, "--s3-interval", "5s",
                "--cache-dir", str(work / f"cache-{i}"), "--fleet", etcd.url,
                "--fleet-name", FLEET, "--zone", f"zone-{'ab'[i % 2]}",
            ]  # fmt: skip
            nodes.append(Node(f"node-{i}", flags, s3.env(), work / f"node-{i}.log").start())
        for node in nodes:
            node.wait_ready(120)
        print(_instructions(etcd, s3, nodes, work), flush=True)
        stop.wait()
    except (RuntimeError, AssertionError, OSError, FleetError) as exc:
        print(f"run-fleet: {str(exc).splitlines()[0]} (logs under {work})", file=sys.stderr)
        sys.exit(1)
    finally:
        print("stopping the nodes, S3 and etcd ...", file=sys.stderr)
        for node in nodes:
            node.stop(30)
        s3.stop()
        etcd.stop()


if __name__ == "__main__":
    main()
