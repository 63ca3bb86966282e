from prometheus_client.parser import text_string_to_metric_families

from baton.observe.events import EventBus
from baton.observe.metrics import RETAINED_UNLOADED, Metrics


def series_versions(metrics: Metrics, name: str) -> set[str]:
    return {
        s.labels["version"]
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
        if s.name == name
    }


def test_state_events_drive_metrics_and_cardinality_stays_bounded():
    bus, metrics = EventBus(), Metrics()
    bus.subscribe(metrics.on_event)
    for v in range(1, 21):
        for state in ("DISCOVERED", "VERIFYING", "LOADING"):
            bus.publish("state", "m", version=v, state=state)
        bus.publish("state", "m", version=v, state="WARMING", data={"load_seconds": 0.1})
        bus.publish("state", "m", version=v, state="READY", data={"warmup_seconds": 0.01})
        bus.publish("state", "m", version=v, state="SERVING")
        ok, _, latency, _ = metrics.request_children("m", v)
        ok.inc()
        latency.observe(0.001)
        bus.publish("swap", "m", version=v)
        if v > 1:
            bus.publish("state", "m", version=v - 1, state="DRAINING")
            bus.publish(
                "state",
                "m",
                version=v - 1,
                state="UNLOADED",
                data={"drain_seconds": 0.2, "forced": v == 5},
            )
    kept = {str(v) for v in range(20 - RETAINED_UNLOADED, 21)}
    assert series_versions(metrics, "baton_version_state") == kept
    assert series_versions(metrics, "baton_requests_total") == kept
    text = metrics.render().decode()
    assert 'baton_version_state{model="m",state="SERVING",version="20"} 1.0' in text
    assert 'baton_version_state{model="m",state="UNLOADED",version="19"} 1.0' in text
    assert 'baton_swaps_total{model="m"} 20.0' in text
    assert 'baton_forced_unloads_total{model="m"} 1.0' in text
    assert 'baton_load_duration_seconds_count{model="m"} 20.0' in text
    assert 'baton_drain_duration_seconds_count{model="m"} 19.0' in text


def test_failed_loads_are_counted_by_reason():
    bus, metrics = EventBus(), Metrics()
    bus.subscribe(metrics.on_event)
    bus.publish("state", "m", version=1, state="FAILED", reason="load_error")
    bus.publish("state", "m", version=2, state="FAILED", reason="load_error")
    bus.publish("state", "m", version=3, state="FAILED", reason="incompatible_signature")
    text = metrics.render().decode()
    assert 'baton_failed_loads_total{model="m",reason="load_error"} 2.0' in text
    assert 'baton_failed_loads_total{model="m",reason="incompatible_signature"} 1.0' in text


def test_operator_rollbacks_and_aborted_rollouts_are_counted():
    bus, metrics = EventBus(), Metrics()
    bus.subscribe(metrics.on_event)
    bus.publish("rollback", "m", version=1, reason="operator", data={"from": 2})
    rollout = {"stable": 1, "candidate": 2, "weight": 0.0, "failed_gates": []}
    bus.publish("rollout", "m", version=2, state="ABORTED", data=rollout)
    bus.publish("rollout", "m", version=2, state="ROLLED_BACK",
                data=rollout | {"failed_gates": ["error_rate"]})  # fmt: skip
    text = metrics.render().decode()
    assert 'baton_rollbacks_total{model="m",reason="operator"} 2.0' in text
    assert 'baton_rollbacks_total{model="m",reason="error_rate"} 1.0' in text


def test_a_version_state_series_exists_only_for_states_it_has_been_in():
    bus, metrics = EventBus(), Metrics()
    bus.subscribe(metrics.on_event)
    for state in ("DISCOVERED", "VERIFYING", "FAILED"):
        bus.publish("state", "m", version=1, state=state)
    states = {
        s.labels["state"]: s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
        if s.name == "baton_version_state"
    }
    assert states == {"DISCOVERED": 0.0, "VERIFYING": 0.0, "FAILED": 1.0}
