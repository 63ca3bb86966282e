"""A fleet of real nodes (subprocesses) on a real etcd, with versions in moto's S3, under load.

Each test starts its own etcd, S3 stand-in and nodes on loopback and stops them by PID.
"""

from __future__ import annotations

import itertools
import json
import time

import httpx
import onnx
import pytest

from baton.artifacts.manifest import MANIFEST
from baton.artifacts.publish import publish
from baton.dev.demo import affine_model
from tests.integration.traffic import Traffic

from ..conftest import wait_for
from .fleet import FleetRepo, baton_fleet, digests, fleet, serves, start_node

pytestmark = pytest.mark.timeout(240)

ZONES = {"a": "z1", "b": "z2", "c": "z1"}


def three_nodes(processes, etcd, repo):
    nodes = {name: start_node(processes, etcd, repo, name, zone) for name, zone in ZONES.items()}
    for node in nodes.values():
        node.wait_ready(90)
    wait_for(lambda: len(fleet(etcd).reports) == 3, 30, "three node reports")
    return nodes


def on_version(processes, etcd, repo, version):
    """Three nodes, every one serving ``version`` of m as the fleet's target."""
    nodes = three_nodes(processes, etcd, repo)
    done = baton_fleet(etcd, "target", "m", str(version))
    assert done.returncode == 0, done.stderr
    assert f"target is now version {version}" in done.stdout
    wait_for(lambda: all(serves(fleet(etcd), n, version) for n in nodes), 60, f"v{version}")
    return nodes


class FleetTraffic:
    """Closed-loop clients against every node at once."""

    def __init__(self, nodes, clients: int = 1):
        self.traffic = [Traffic(node.url, clients=clients) for node in nodes.values()]

    def __enter__(self):
        for t in self.traffic:
            t.__enter__()
        return self

    def __exit__(self, *exc):
        for t in self.traffic:
            t.__exit__(*exc)

    @property
    def failures(self) -> list[str]:
        return [f for t in self.traffic for f in t.failures]

    @property
    def answered(self) -> int:
        return sum(len(t.log) for t in self.traffic)


def test_a_rollout_in_three_waves_moves_every_node_with_no_failed_request(processes, etcd, s3,
                                                                          tmp_path):  # fmt: skip
    repo = FleetRepo(s3, tmp_path)
    nodes = on_version(processes, etcd, repo, 1)
    with FleetTraffic(nodes) as load:
        started = baton_fleet(etcd, "rollout", "start", "m", "--to", "2", "--waves",
                              "1,2,100%", "--wave-interval", "1s", "--max-p99-ratio", "1000",
                              "--min-requests", "20")  # fmt: skip
        assert started.returncode == 0, started.stderr
        assert "waves of 1/2/3 of 3 nodes" in started.stdout
        seen_waves = set()

        def promoted():
            state = fleet(etcd)
            seen_waves.add(state.rollouts["m"].wave)
            return state.rollouts["m"].status == "PROMOTED"

        wait_for(promoted, 120, "the rollout to be promoted")
        time.sleep(1)
    assert load.failures == [] and load.answered > 100
    assert seen_waves >= {1, 2}  # it went through the waves (the first may pass unseen)
    state = wait_for(lambda: (s := fleet(etcd)).verdict.status == "converged" and s, 30)
    assert state.targets["m"].version == 2
    assert digests(state, 2) == {state.targets["m"].digest}  # every node: the target's bytes
    for t in load.traffic:  # every node moved from 1 to 2, never back
        versions = [v for _, _, v in t.log]
        assert versions[0] == "1" and versions[-1] == "2"
        assert versions == sorted(versions)
    status = baton_fleet(etcd, "status")
    assert status.returncode == 0 and "verdict: converged" in status.stdout
    audit = baton_fleet(etcd, "audit", "--model", "m").stdout
    assert "wave 1 passed; wave 2 starts" in audit and "every wave converged" in audit


def test_with_canary_steps_each_node_of_a_wave_runs_its_own_canary(processes, etcd, s3,
                                                                    tmp_path):  # fmt: skip
    repo = FleetRepo(s3, tmp_path, versions=(1,))
    nodes = on_version(processes, etcd, repo, 1)
    repo.publish(2)
    wait_for(lambda: all("2" in r["models"]["m"]["available"]
                         for r in fleet(etcd).reports.values()), 30, "v2 listed")  # fmt: skip
    with FleetTraffic(nodes) as load:
        started = baton_fleet(etcd, "rollout", "start", "m", "--to", "2", "--waves", "1,100%",
                              "--wave-interval", "1s", "--canary-steps", "50,100",
                              "--canary-interval", "2s", "--max-p99-ratio", "1000")  # fmt: skip
        assert started.returncode == 0, started.stderr
        status = baton_fleet(etcd, "rollout", "status", "m").stdout
        assert "each node a canary 50%/100% every 2s" in status
        state = wait_for(lambda: (s := fleet(etcd)).rollouts["m"].finished and s, 120)
        time.sleep(1)
    assert state.rollouts["m"].status == "PROMOTED", state.rollouts["m"].reason
    assert load.failures == []
    first = state.rollouts["m"].order[0]
    for name, t in zip(nodes, load.traffic, strict=True):
        versions = [v for _, _, v in t.log]
        assert versions[0] == "1" and versions[-1] == "2"
        mixed = any(a == "2" and b == "1" for a, b in itertools.pairwise(versions))
        if name == first:  # its canary sent callers to both versions for a while
            assert mixed, f"{name} never served both versions at once"
    assert all(serves(fleet(etcd), n, 2) for n in nodes)


def test_a_version_that_fails_to_load_rolls_the_fleet_back(processes, etcd, s3, tmp_path):
    repo = FleetRepo(s3, tmp_path, versions=(1,))
    nodes = on_version(processes, etcd, repo, 1)
    repo.publish_broken(2)
    wait_for(lambda: all("2" in r["models"]["m"]["available"]
                         for r in fleet(etcd).reports.values()), 30, "v2 listed")  # fmt: skip
    with FleetTraffic(nodes) as load:
        started = baton_fleet(etcd, "rollout", "start", "m", "--to", "2", "--wave-interval", "1s")
        assert started.returncode == 0, started.stderr
        state = wait_for(lambda: (s := fleet(etcd)).rollouts["m"].finished and s, 90)
        time.sleep(2)
    rollout = state.rollouts["m"]
    assert rollout.status == "ROLLED_BACK"
    assert "version 2 failed on node" in rollout.reason
    assert load.failures == []
    state = fleet(etcd)
    assert all(serves(state, n, 1) for n in nodes) and state.targets["m"].version == 1
    assert "version 2 failed on node" in baton_fleet(etcd, "audit").stdout
    # The same bad version as the target of every node at once: each one tries it, keeps
    # serving version 1 and stays ready; the fleet is diverged, never out of the balancer.
    with FleetTraffic(nodes) as load:
        assert baton_fleet(etcd, "target", "m", "2").returncode == 0
        state = wait_for(lambda: (s := fleet(etcd)).verdict.status == "diverged"
                         and len(s.verdict.diverged) == 3 and s, 60)  # fmt: skip
        assert all("version 2 failed" in d for d in state.verdict.diverged)
        for node in nodes.values():
            assert httpx.get(f"{node.url}/v2/health/ready", timeout=5).status_code == 200
    assert load.failures == [] and all(serves(state, n, 1) for n in nodes)


def test_a_node_whose_repository_holds_other_bytes_is_diverged_never_fine(
    processes, etcd, s3, tmp_path
):
    repo = FleetRepo(s3, tmp_path, versions=(1,))
    nodes = on_version(processes, etcd, repo, 1)
    other = tmp_path / "other"
    (other / "m").mkdir(parents=True)
    (other / "m" / "model.yaml").write_bytes(b"version_policy: {latest: 1}\n")
    model = tmp_path / "other.onnx"
    onnx.save(affine_model(7.0), str(model))  # "version 1", but other weights
    publish(model, other, "m", version=1)
    odd = processes.node("d", ["--repository", str(other), "--fleet", etcd.url, "--fleet-name",
                               "t", "--lease-ttl", "3"])  # fmt: skip
    odd.wait_live(30)
    state = wait_for(lambda: (s := fleet(etcd)).verdict.status == "diverged" and s, 30)
    assert any(d.startswith("d/m:") and "other bytes" in d for d in state.verdict.diverged)
    status = baton_fleet(etcd, "status")
    assert "verdict: diverged" in status.stdout and "other bytes" in status.stdout
    assert not serves(state, "d", 1)  # it never loaded the odd bytes as the fleet's version
    grid = dashboard_fleet_grid(nodes["a"].url)  # what any node's dashboard shows
    assert grid["status"] == "diverged" and grid["models"] == ["m"] and grid["rollouts"] == []
    rows = {n["name"]: n for n in grid["nodes"]}
    assert rows["d"]["diverged"] and rows["d"]["models"]["m"]["state"] == "diverged"
    assert not rows["a"]["diverged"] and rows["a"]["models"]["m"]["version"] == 1


def dashboard_fleet_grid(url: str, timeout: float = 20.0) -> dict:
    """The first fleet grid a dashboard's live feed (``/dashboard/stream``) sends."""
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", f"{url}/dashboard/stream", timeout=timeout) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: ") and (grid := json.loads(line[6:]).get("fleet")):
                return grid
            assert time.monotonic() < deadline, "no fleet grid on the dashboard's feed"
    raise AssertionError("the dashboard's feed ended")


def test_etcd_down_for_ten_seconds_under_load_costs_nothing(processes, etcd, s3, tmp_path):
    repo = FleetRepo(s3, tmp_path, versions=(1,))
    nodes = on_version(processes, etcd, repo, 1)
    with FleetTraffic(nodes) as load:
        time.sleep(1)
        etcd.stop()
        time.sleep(10)
        etcd.restart()
        state = wait_for(lambda: (s := fleet(etcd)) and len(s.reports) == 3 and s, 30)
        time.sleep(1)
    assert load.failures == []
    for t in load.traffic:
        assert {v for _, _, v in t.log} == {"1"}
        gap = max(b - a for (a, _, _), (b, _, _) in zip(t.log, t.log[1:], strict=False))
        assert gap < 2.0, f"a node stopped answering for {gap:.1f}s"
    assert all(serves(state, n, 1) for n in nodes)
    assert state.verdict.status == "converged"


def test_kill_9_of_a_node_and_of_the_coordinator_mid_rollout_and_it_still_completes(
    processes, etcd, s3, tmp_path
):
    repo = FleetRepo(s3, tmp_path, versions=(1,))
    nodes = on_version(processes, etcd, repo, 1)
    repo.publish(2)
    wait_for(lambda: all("2" in r["models"]["m"]["available"]
                         for r in fleet(etcd).reports.values()), 30, "v2 listed")  # fmt: skip
    started = baton_fleet(etcd, "rollout", "start", "m", "--to", "2", "--waves", "1,2,100%",
                          "--wave-interval", "3s")  # fmt: skip
    assert started.returncode == 0, started.stderr
    first = fleet(etcd).rollouts["m"].order[0]
    wait_for(lambda: serves(fleet(etcd), first, 2), 60, "wave 1")
    leader = wait_for(lambda: fleet(etcd).leader, 10, "a coordinator")
    nodes[leader].kill()  # the coordinator's node, mid-wave
    others = [n for n in nodes if n != leader]
    victim = next(n for n in others if n != first) if leader == first else first
    nodes[victim].kill()  # and a node of the rollout
    survivors = [n for n in nodes if n not in (leader, victim)]
    state = wait_for(lambda: (s := fleet(etcd)).rollouts["m"].status == "PROMOTED" and s, 120,
                     "the rollout to complete without them")  # fmt: skip
    assert state.leader in survivors
    assert all(serves(state, n, 2) for n in survivors)
    for name in (leader, victim):  # back: they load what the fleet serves, then report ready
        nodes[name].restart()
    for name in (leader, victim):
        nodes[name].wait_ready(90)
    state = wait_for(lambda: (s := fleet(etcd)).verdict.status == "converged" and s, 60)
    assert all(serves(state, n, 2) for n in nodes)


def test_a_version_half_uploaded_to_s3_is_never_loaded(processes, s3, tmp_path):
    FleetRepo(s3, tmp_path, versions=(1,))  # no fleet: a plain S3 repository
    node = processes.node("solo", ["--repository", "s3://models/repo", "--s3-endpoint",
                                   s3.endpoint, "--s3-interval", "1s", "--cache-dir",
                                   str(tmp_path / "cache")], s3.env())  # fmt: skip
    node.wait_ready(60)
    staged = tmp_path / "staged"
    (staged / "m").mkdir(parents=True)
    (staged / "m" / "model.yaml").write_bytes(b"version_policy: {latest: 1}\n")
    onnx.save(affine_model(2.0), str(tmp_path / "two.onnx"))
    version_dir = publish(tmp_path / "two.onnx", staged, "m", version=2)
    client = s3.client()
    client.upload_file(str(version_dir / "model.onnx"), "models", "repo/m/2/model.onnx")
    with Traffic(node.url) as load:
        time.sleep(5)  # five listings see version 2's files, without its manifest
        assert {v for _, _, v in load.log} == {"1"}
        versions = httpx.get(f"{node.url}/admin/models/m", timeout=10).json()["versions"]
        assert "2" not in versions and 2 not in versions
        client.upload_file(str(version_dir / MANIFEST), "models", f"repo/m/2/{MANIFEST}")
        wait_for(lambda: load.log and load.log[-1][2] == "2", 30, "version 2 once complete")
    assert load.failures == []
