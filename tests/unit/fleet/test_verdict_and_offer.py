"""The fleet's verdict, a node's fleet offer, and the operator's digest lookups, with tables."""

from dataclasses import replace
from pathlib import Path

import pytest

from baton.artifacts.files import VersionFiles
from baton.fleet.coordinator import node_models
from baton.fleet.operations import FleetError, _serving_target, version_digest
from baton.fleet.rollout import FleetGates, Target, gate_values, start
from baton.fleet.source import FleetView, fleet_offer
from baton.fleet.verdict import fleet_verdict, grid
from baton.sources.base import ModelSpec

T2 = Target(2, "d2")


def report(default=None, serving=None, failed=None, loading=(), note=None, available=None,
           stats=None):  # fmt: skip
    return {"models": {"m": {
        "default": default, "serving": serving or {}, "failed": failed or {},
        "loading": list(loading), "note": note, "available": available or {},
        "stats": stats or {},
    }}}  # fmt: skip


@pytest.mark.parametrize(
    ("node_report", "state", "why"),
    [
        (report(2, {"2": "d2"}), "ok", ""),
        (report(1, {"1": "d1"}), "converging", "not yet on version 2"),
        (report(1, {"1": "d1"}, loading=[2]), "converging", "loading version 2"),
        (report(2, {"2": "other"}), "diverged", "serves version 2 with other bytes"),
        (report(1, {"1": "d1"}, failed={"2": "boom"}), "diverged", "version 2 failed: boom"),
        (report(1, {"1": "d1"}, note="version 2 is not in this node's repository"), "diverged",
         "version 2 is not in this node's repository"),
    ],
)  # fmt: skip
def test_each_node_is_judged_against_the_target(node_report, state, why):
    verdict = fleet_verdict({"m": T2}, {}, {"n1": node_report})
    (cell,) = verdict.cells
    assert (cell.state, cell.why) == (state, why)
    assert verdict.status == {"ok": "converged"}.get(state, state)


def test_one_diverged_node_makes_the_fleet_diverged_whatever_the_others_do():
    reports = {"a": report(2, {"2": "d2"}), "b": report(2, {"2": "bad"}),
               "c": report(1, {"1": "d1"})}  # fmt: skip
    verdict = fleet_verdict({"m": T2}, {}, reports)
    assert verdict.status == "diverged"
    assert verdict.diverged == ("b/m: serves version 2 with other bytes",)
    assert verdict.converging == ("c/m: not yet on version 2",)


def test_the_dashboard_grid_marks_diverged_nodes_and_shows_the_rollout_wave():
    r = replace(start("m", Target(1, "d1"), T2, ("a", "b"), (1, 2)), waved=("a",))
    reports = {"a": report(2, {"2": "d2"}), "b": report(2, {"2": "bad"})}
    view = grid(fleet_verdict({"m": T2}, {}, reports), "a", {"m": r})
    assert (view["status"], view["leader"], view["models"]) == ("diverged", "a", ["m"])
    a, b = view["nodes"]
    assert (a["name"], a["diverged"], a["models"]["m"]["state"]) == ("a", False, "ok")
    assert (b["name"], b["diverged"], b["models"]["m"]) == ("b", True, {
        "version": 2, "want": 2, "digest": "bad", "state": "diverged",
        "why": "serves version 2 with other bytes"})  # fmt: skip
    wave = {"model": "m", "stable": 1, "candidate": 2, "status": "RUNNING", "wave": 1,
            "waves": 2, "nodes": ["a"], "reason": None}  # fmt: skip
    assert view["rollouts"] == [wave]
    finished = replace(r, status="PROMOTED")
    assert grid(fleet_verdict({"m": T2}, {}, reports), None, {"m": finished})["rollouts"] == []


def test_during_a_rollout_unwaved_nodes_are_judged_against_the_stable_version():
    r = replace(start("m", Target(1, "d1"), T2, ("a", "b"), (1, 2)), waved=("a",))
    reports = {"a": report(2, {"2": "d2"}), "b": report(1, {"1": "d1"})}
    verdict = fleet_verdict({"m": Target(1, "d1")}, {"m": r}, reports)
    assert [c.state for c in verdict.cells] == ["ok", "ok"]
    assert verdict.status == "converging"  # the rollout is still running


def test_a_model_without_target_is_unmanaged_and_never_diverged():
    verdict = fleet_verdict({}, {}, {"a": report(5, {"5": "x"})})
    assert verdict.cells[0].state == "unmanaged" and verdict.status == "converged"


def files(version, digest):
    return VersionFiles(Path(f"/repo/m/{version}"), fingerprint=digest, digest=digest)


SPECS = {"m": ModelSpec("m", None, {1: files(1, "d1"), 2: files(2, "d2"), 3: files(3, "d3")}),
         "free": ModelSpec("free", None, {7: files(7, "d7")})}  # fmt: skip


@pytest.mark.parametrize(
    ("view", "offered", "note"),
    [
        (FleetView(), [1, 2, 3], None),  # no target: the repository's own offer
        (FleetView({"m": T2}), [2], None),
        (FleetView({"m": Target(2, "d-other")}), [], "other bytes"),
        (FleetView({"m": Target(9, "d9")}), [], "not in this node's repository"),
        (FleetView({"m": Target(1, "d1")},
                   {"m": replace(start("m", Target(1, "d1"), Target(3, "d3"), ("n", "o"), (1, 2)),
                                 waved=("n",))}), [3], None),  # waved: the candidate
        (FleetView({"m": Target(1, "d1")},
                   {"m": replace(start("m", Target(1, "d1"), Target(3, "d3"), ("n", "o"), (1, 2)),
                                 waved=("o",))}), [1], None),  # not waved: the stable version
    ],
)  # fmt: skip
def test_a_node_offers_exactly_the_version_the_fleet_wants_of_it(view, offered, note):
    offer, notes = fleet_offer(SPECS, view, "n", digest_of=lambda f: f.digest)
    assert sorted(offer["m"].versions) == offered
    assert offer["free"] == SPECS["free"]  # models the fleet does not manage pass through
    assert (note is None and "m" not in notes) or note in notes["m"]


def test_the_digest_of_a_version_is_what_every_node_that_has_it_agrees_on():
    reports = {"a": report(available={"3": "d3"}), "b": report(serving={"3": "d3"}),
               "c": report()}  # fmt: skip
    assert version_digest(reports, "m", 3) == "d3"
    reports["c"] = report(available={"3": "evil"})
    with pytest.raises(FleetError, match="different bytes"):
        version_digest(reports, "m", 3)
    with pytest.raises(FleetError, match="no live node has version 4"):
        version_digest(reports, "m", 4)
    with pytest.raises(FleetError, match="no live node reports"):
        version_digest({}, "m", 4)


def test_without_a_target_the_stable_version_is_what_all_nodes_serve():
    same = {"a": report(1, {"1": "d1"}), "b": report(1, {"1": "d1"})}
    assert _serving_target(same, "m") == Target(1, "d1")
    mixed = {"a": report(1, {"1": "d1"}), "b": report(2, {"2": "d2"})}
    with pytest.raises(FleetError, match=r"v1, v2\): set one first"):
        _serving_target(mixed, "m")


def test_gate_values_aggregate_the_waved_nodes_against_the_others():
    r = replace(start("m", Target(1, "d1"), T2, ("a", "b", "c"), (1, 3),
                      gates=FleetGates(min_requests=10)), waved=("a",))  # fmt: skip
    reports = {
        "a": report(2, {"2": "d2"}, stats={"2": {"requests": 100, "errors": 3, "p99": 0.02}}),
        "b": report(1, {"1": "d1"}, stats={"1": {"requests": 100, "errors": 0, "p99": 0.01}}),
        "c": report(1, {"1": "d1"}, stats={"1": {"requests": 100, "errors": 0, "p99": 0.03}}),
    }
    values = gate_values(r, {n: node_models(doc) for n, doc in reports.items()})
    assert (values.requests, values.errors, values.error_rate) == (100, 3, 0.03)
    assert values.p99_ratio == pytest.approx(0.02 / 0.02)  # against the stable median
