"""A source that cannot see its store, and configuration that fails closed, at the manager."""

from baton.control.lifecycle import VersionState as S
from baton.sources.base import ModelSpec, Unknown
from tests.unit.control.harness import Harness


async def test_an_unknown_offer_keeps_what_serves_and_is_reported(tmp_path):
    h = Harness(tmp_path)
    h.add(1)
    await h.settle()
    h.manager.publish("test", Unknown("cannot list the model repository: gone"))
    await h.settle()
    assert h.state(1) is S.SERVING and h.default() == 1
    assert h.manager.unavailable_sources() == {"test": "cannot list the model repository: gone"}
    h.manager.publish("test", Unknown("still gone"))  # reported once per outage
    h.offer_all()  # back
    await h.settle()
    sources = [(e.state, e.data["source"]) for e in h.events.recent() if e.kind == "source"]
    assert sources == [("unavailable", "test"), ("available", "test")]
    assert h.manager.unavailable_sources() == {}


async def test_a_model_never_configured_loads_nothing_and_does_not_hold_back_readiness(tmp_path):
    h = Harness(tmp_path)
    h.add(1)
    spec = ModelSpec("m", None, dict(h.versions), "model.yaml: stepz is not a field")
    h.manager.publish("test", {"m": spec})
    assert await h.settle() == []
    m = h.manager.model("m")
    assert not m.configured and m.versions == {} and h.manager.synced
    errors = [(e.state, e.message) for e in h.events.recent() if e.kind == "config_error"]
    assert errors == [("invalid", "model.yaml: stepz is not a field")]
    h.offer_all()  # fixed
    await h.settle()
    assert h.default() == 1
    assert [e.state for e in h.events.recent() if e.kind == "config_error"][-1] == "cleared"
