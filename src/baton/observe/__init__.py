"""Observing what happens: the event bus every state change is published on, Prometheus
metrics, and the append-only audit log. Depends on nothing but the standard library and
``baton.types``; everything else publishes into it."""

__all__: list[str] = []
