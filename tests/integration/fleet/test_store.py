"""The fleet store and the operator's actions against a real etcd (reports written by hand)."""

from __future__ import annotations

import pytest

from baton.fleet.operations import (
    FleetError,
    RolloutOptions,
    fleet_state,
    operate_rollout,
    set_target,
    start_rollout,
)
from baton.fleet.store import FleetStore, StoreUnavailable


def report(default: int, digests: dict[int, str]) -> dict:
    return {"node": "n", "zone": None, "time": 0, "ready": True, "store": "reachable",
            "models": {"m": {"default": default, "serving": {str(default): digests[default]},
                             "failed": {}, "loading": [], "note": None, "stats": {},
                             "available": {str(v): d for v, d in digests.items()}}}}  # fmt: skip


@pytest.fixture
def store(etcd):
    return FleetStore.connect(etcd.url, "t")


def test_cas_checks_every_key_it_names_and_writes_all_or_nothing(store):
    store.put("/x/a", {"v": 1})
    store.put("/x/b", {"v": 1})
    _, a = store.get("/x/a")
    _, b = store.get("/x/b")
    store.put("/x/b", {"v": 2})  # someone else writes b
    assert not store.cas("/x/a", {"v": 9}, a, also={"/x/c": {"v": 9}}, unchanged={"/x/b": b})
    assert store.get("/x/a")[0] == {"v": 1} and store.get("/x/c") == (None, 0)
    _, b = store.get("/x/b")
    assert store.cas("/x/a", {"v": 9}, a, also={"/x/c": {"v": 9}}, unchanged={"/x/b": b})
    assert store.get("/x/a")[0] == {"v": 9} and store.get("/x/c")[0] == {"v": 9}


def test_one_election_winner_and_a_revoked_lease_takes_its_keys(store):
    first, second = store.lease(5), store.lease(5)
    assert store.create("/x/election", {"node": "a"}, first)
    assert not store.create("/x/election", {"node": "b"}, second)
    store.revoke(first)
    assert store.get("/x/election") == (None, 0)
    assert store.create("/x/election", {"node": "b"}, second)


def test_operator_actions_on_reports_refuse_what_would_be_wrong(store):
    store.put(store.keys.node("n1"), report(1, {1: "d1", 2: "d2"}))
    store.put(store.keys.node("n2"), report(1, {1: "d1", 2: "d2"}))
    assert set_target(store, "m", 1).digest == "d1"
    with pytest.raises(FleetError, match="already serves m version 1"):
        start_rollout(store, "m", 1, RolloutOptions())
    rollout = start_rollout(store, "m", 2, RolloutOptions(waves="1,100%"))
    assert (rollout.stable.version, rollout.candidate.version, rollout.sizes) == (1, 2, (1, 2))
    with pytest.raises(FleetError, match="under way"):
        set_target(store, "m", 2)
    with pytest.raises(FleetError, match="already running"):
        start_rollout(store, "m", 2, RolloutOptions())
    after, line = operate_rollout(store, "m", "promote")
    assert after.status == "PROMOTED" and "every node now serves v2" in line
    state = fleet_state(store)
    assert state.targets["m"].version == 2  # written with the promotion, in one transaction
    with pytest.raises(FleetError, match="already ended"):
        operate_rollout(store, "m", "abort")
    store.put(store.keys.node("n3"), report(1, {1: "d1", 2: "evil"}))
    with pytest.raises(FleetError, match="different bytes"):
        set_target(store, "m", 2)


def test_an_unreachable_etcd_is_an_error_never_an_empty_fleet(store, etcd):
    etcd.stop()
    with pytest.raises(StoreUnavailable, match="connection refused or unreachable"):
        fleet_state(store)
